"""`trainer.evaluate` and `corpus evaluate`: held-out loss and bits per byte, and multiple-choice
accuracy, each checked against the test's own loop over the same model.

The model is `tests/test_generate.py`'s small real checkpoint (a byte-level BPE and a tiny GPT
trained a few dozen steps on the first 60,000 characters of Shakespeare); the held-out text and
the questions are Shakespeare from far beyond what it trained on."""

import json
import math
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from flows.cli import main
from schemas.tokens import EOT_TOKEN
from tests.conftest import shared
from tests.test_generate import corpus, one_line_error, write_checkpoint
from trainer.evaluate import (
    arc_record,
    choice_logliks,
    choice_tokens,
    convert_file,
    evaluate_task,
    hellaswag_record,
    piqa_record,
    question,
    read_tasks,
    read_texts,
    text_loss,
)
from trainer.generate import load
from trainer.model import GPT

HELD_OUT = slice(300_000, 340_000)  # characters of tinyshakespeare.txt; training saw [:60_000]


def held_out() -> str:
    return shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8")[HELD_OUT]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is many times faster than two
    contending (measured 20x under load), and gives the CPU back to the other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    checkpoint = write_checkpoint(tmp_path_factory.mktemp("run"))
    model, tokenizer = load(str(checkpoint))
    return checkpoint, model, tokenizer


def hand_logprob(model, ids: list[int], first: int) -> float:
    """log P(ids[first:] | ids[:first]), one forward pass per block of targets: each block of
    `block_size` targets read from the `block_size` tokens that end just before its last one."""
    block = model.config.block_size
    total = 0.0
    with torch.no_grad():
        for start in range(first, len(ids), block):  # targets ids[start:stop]
            stop = min(start + block, len(ids))
            lo = max(0, stop - 1 - block)
            logits, _ = model.eval()(torch.tensor([ids[lo:stop - 1]]))
            logp = logits[0].log_softmax(-1)
            total += sum(logp[j - 1 - lo, ids[j]].item() for j in range(start, stop))
    return total


def hand_nll(model, tokenizer, texts) -> float:
    eot = tokenizer.token_to_id(EOT_TOKEN)
    return -sum(hand_logprob(model, [eot] + tokenizer.encode(t).ids, 1) for t in texts)


def test_bits_per_byte_is_the_hand_computed_nll_over_ln2_and_bytes(trained):
    _, model, tokenizer = trained
    text = held_out()
    texts = [text[:2500], "ROMEO:\nI", "", "Pray you, café — naïve thée.\n", text[5000:5400]]
    model.train()  # text_loss must score in eval mode (dropout off) and give the mode back
    score = text_loss(model, tokenizer, texts, batch_size=3)
    assert model.training
    nll = hand_nll(model, tokenizer, texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert n_bytes > sum(len(t) for t in texts)  # the non-ASCII text counts bytes, not chars
    assert score.documents == 5 and score.bytes == n_bytes
    assert score.tokens == sum(len(tokenizer.encode(t).ids) for t in texts)
    assert score.nll == pytest.approx(nll, rel=1e-5)
    assert score.bits_per_byte == pytest.approx(nll / math.log(2) / n_bytes, rel=1e-5)
    assert score.loss == pytest.approx(nll / score.tokens, rel=1e-5)
    # batching pads, which never changes a score
    one = text_loss(model, tokenizer, texts, batch_size=1)
    assert one.nll == pytest.approx(score.nll, rel=1e-6)


def test_stride_one_predicts_each_token_from_the_block_before_it(trained):
    _, model, tokenizer = trained
    text = held_out()[8000:8150]
    block = model.config.block_size
    model.eval()
    ids = [tokenizer.token_to_id(EOT_TOKEN)] + tokenizer.encode(text).ids
    assert len(ids) > 2 * block
    nll = 0.0
    with torch.no_grad():
        for p in range(1, len(ids)):  # ids[p] from at most `block` tokens before it
            logits, _ = model(torch.tensor([ids[max(0, p - block):p]]))
            nll -= logits[0, -1].log_softmax(-1)[ids[p]].item()
    score = text_loss(model, tokenizer, [text], stride=1, batch_size=16)
    assert score.nll == pytest.approx(nll, rel=1e-5)
    assert score.tokens == len(ids) - 1
    with pytest.raises(ValueError, match="block_size must be within"):
        text_loss(model, tokenizer, [text], block_size=block + 1)


def test_a_trained_model_predicts_held_out_text_better_than_a_fresh_one(trained):
    _, model, tokenizer = trained
    texts = [held_out()[12000:16000]]
    torch.manual_seed(1)
    fresh = GPT(model.config)
    trained_score = text_loss(model, tokenizer, texts)
    fresh_score = text_loss(fresh, tokenizer, texts)
    assert trained_score.bits_per_byte < fresh_score.bits_per_byte
    # a fresh model is near uniform over the vocabulary
    assert fresh_score.loss == pytest.approx(math.log(model.config.vocab_size), rel=0.05)


def next_line_task(path, n: int = 24) -> list[dict]:
    """Real Shakespeare as questions: context two consecutive lines, the true choice the line
    after them, three distractors lines from elsewhere in the text; the answer's place varies."""
    lines = held_out().splitlines()
    starts = [i for i in range(1, len(lines) - 1)
              if lines[i - 1] and lines[i] and len(lines[i + 1]) > 10][:n]
    records = []
    for k, i in enumerate(starts):
        others = [lines[j] for j in range((i * 7 + 300) % len(lines), len(lines)) if
                  len(lines[j]) > 10 and abs(j - i) > 5][:3]
        choices = ["\n" + line for line in others]
        choices.insert(k % 4, "\n" + lines[i + 1])
        records.append({"context": lines[i - 1] + "\n" + lines[i], "choices": choices,
                        "answer": k % 4, "id": f"line-{i}"})
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return records


def hand_choice_loglik(model, tokenizer, context: str, choice: str) -> float:
    """log P(choice | end token + context): the context encoded alone, the choice's tokens
    those of context + choice after it."""
    context_ids = tokenizer.encode(context).ids
    choice_ids = tokenizer.encode(context + choice).ids[len(context_ids):]
    ids = [tokenizer.token_to_id(EOT_TOKEN)] + context_ids + choice_ids
    return hand_logprob(model, ids, len(ids) - len(choice_ids))


def test_multiple_choice_accuracy_is_the_hand_computed_one(trained, tmp_path):
    _, model, tokenizer = trained
    records = next_line_task(tmp_path / "next-line.jsonl")
    questions = read_tasks(str(tmp_path / "next-line.jsonl"))
    assert len(questions) == len(records) == 24
    block = model.config.block_size
    assert any(len(tokenizer.encode(q.context).ids) > block for q in questions)  # cut from left
    assert any(len(tokenizer.encode(c).ids) > block for q in questions for c in q.choices)
    hand = [[hand_choice_loglik(model, tokenizer, q.context, c) for c in q.choices]
            for q in questions]
    got = choice_logliks(model, tokenizer, questions, batch_size=7)
    for mine, theirs in zip(got, hand):
        assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-4)
    right = [s.index(max(s)) == q.answer for s, q in zip(hand, questions)]
    per_byte = [[v / len(c.encode("utf-8")) for v, c in zip(s, q.choices)]
                for s, q in zip(hand, questions)]
    right_norm = [s.index(max(s)) == q.answer for s, q in zip(per_byte, questions)]
    score = evaluate_task(model, tokenizer, questions)
    n = len(questions)
    assert score.n == n
    assert score.acc == sum(right) / n
    assert score.acc_norm == sum(right_norm) / n
    p = score.acc
    assert score.acc_stderr == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    q = score.acc_norm
    assert score.acc_norm_stderr == pytest.approx(math.sqrt(q * (1 - q) / (n - 1)))


def test_a_trailing_space_of_the_context_belongs_to_the_choice(trained):
    _, _, tokenizer = trained
    context = "To be, or not to be, "
    assert choice_tokens(tokenizer, context, "that") == \
        (tokenizer.encode("To be, or not to be,").ids, tokenizer.encode(" that").ids)
    assert choice_tokens(tokenizer, "Speak", " again") == \
        (tokenizer.encode("Speak").ids, tokenizer.encode(" again").ids)


def test_bad_task_records_name_the_file_and_line(tmp_path):
    good = {"context": "a", "choices": [" b", " c"], "answer": 1}
    cases = [({**good, "answer": 2}, "answer 2 is out of range for 2 choices"),
             ({k: v for k, v in good.items() if k != "choices"}, "missing field 'choices'"),
             ({**good, "choices": [" b"]}, "1 choice(s); a question needs at least 2"),
             ({**good, "answer": True}, "answer must be a whole number"),
             ({**good, "choices": [" b", ""]}, "choice 1 is empty"),
             ({**good, "context": 3}, "context must be a string")]
    for record, message in cases:
        path = tmp_path / "task.jsonl"
        path.write_text(json.dumps(good) + "\n\n" + json.dumps(record) + "\n", encoding="utf-8")
        with pytest.raises(ValueError, match="task.jsonl:3: " + re.escape(message)):
            read_tasks(str(path))
    path.write_text(json.dumps(good) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="task.jsonl:2: not JSON"):
        read_tasks(str(path))
    assert question(good).choices == (" b", " c")


def test_text_files_of_each_kind_give_their_documents(tmp_path):
    docs = ["First document.\n", "Second, with é.", ""]
    (tmp_path / "one.txt").write_text("".join(docs), encoding="utf-8")
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n"
                                                 for i, d in enumerate(docs)), encoding="utf-8")
    pq.write_table(pa.table({"text": docs, "id": [1, 2, 3]}), tmp_path / "docs.parquet")
    assert read_texts(str(tmp_path / "one.txt")) == ["".join(docs)]
    assert read_texts(str(tmp_path / "docs.jsonl")) == docs
    assert read_texts(str(tmp_path / "docs.parquet")) == docs
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2: no 'text' string field"):
        read_texts(str(tmp_path / "bad.jsonl"))
    (tmp_path / "docs.csv").write_text("text\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a .txt"):
        read_texts(str(tmp_path / "docs.csv"))
    with pytest.raises(FileNotFoundError, match="text file not found"):
        read_texts(str(tmp_path / "absent.txt"))


# Two records in the format of rowanz/hellaswag's hellaswag_val.jsonl, written by hand.
HELLASWAG = [
    {"ind": 24, "activity_label": "Roof shingle removal",
     "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
     "ctx": "A man is sitting on a roof. he", "split": "val", "split_type": "indomain",
     "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                 "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
     "source_id": "activitynet~v_-JhWjGDPHMY", "label": 3},
    {"ind": 92, "activity_label": "Home and Garden",
     "ctx_a": "[header] How to clean a kettle [title] Fill the kettle with water.",
     "ctx_b": "[step] add", "ctx": "", "split": "val", "split_type": "zeroshot",
     "endings": ["vinegar [substeps] Use one part to two.", "sand to it.", "a sock.",
                 "the lid [title] Boil it."],
     "source_id": "wikihow~1234", "label": "0"},
]


def test_hellaswag_records_convert_to_the_task_format(tmp_path):
    first, second = (hellaswag_record(doc) for doc in HELLASWAG)
    assert first == {"context": "Roof shingle removal: A man is sitting on a roof. He",
                     "choices": [" is using wrap to wrap a pair of skis.",
                                 " is ripping level tiles off.", " is holding a rubik's cube.",
                                 " starts pulling up roofing on a roof."],
                     "answer": 3, "id": "24"}
    # WikiHow markers: a title ends a sentence, the others go; the label may be a string
    assert second["context"] == ("Home and Garden: How to clean a kettle. Fill the kettle with "
                                 "water. add")
    assert second["choices"][0] == " vinegar Use one part to two."
    assert second["choices"][3] == " the lid. Boil it."
    assert second["answer"] == 0
    source = tmp_path / "hellaswag_val.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in HELLASWAG), encoding="utf-8")
    assert convert_file("hellaswag", str(source), str(tmp_path / "hs.jsonl")) == 2
    questions = read_tasks(str(tmp_path / "hs.jsonl"))
    assert [q.answer for q in questions] == [3, 0] and questions[0].id == "24"
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({**HELLASWAG[0], "label": 7}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.jsonl:1: answer 7 is out of range"):
        convert_file("hellaswag", str(broken), str(tmp_path / "out.jsonl"))
    with pytest.raises(ValueError, match="broken.jsonl:1: not in piqa's format"):
        convert_file("piqa", str(broken), str(tmp_path / "out.jsonl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jsonl", "hellaswag_val.jsonl",
                                                          "hs.jsonl"]  # no half task file


def test_arc_and_piqa_records_convert_to_the_task_format():
    hf_arc = {"id": "Mercury_7175875", "question": "Which is a mammal?",
              "choices": {"text": ["shark", "whale", "trout"], "label": ["A", "B", "C"]},
              "answerKey": "B"}
    ai2_arc = {"id": "Mercury_7175875", "answerKey": "B",
               "question": {"stem": "Which is a mammal?",
                            "choices": [{"text": "shark", "label": "A"},
                                        {"text": "whale", "label": "B"},
                                        {"text": "trout", "label": "C"}]}}
    expected = {"context": "Question: Which is a mammal?\nAnswer:",
                "choices": [" shark", " whale", " trout"], "answer": 1, "id": "Mercury_7175875"}
    assert arc_record(hf_arc) == arc_record(ai2_arc) == expected
    piqa = {"goal": "Keep bread fresh", "sol1": "Freeze it.", "sol2": "Wet it.", "label": 0}
    assert piqa_record(piqa) == {"context": "Question: Keep bread fresh\nAnswer:",
                                 "choices": [" Freeze it.", " Wet it."], "answer": 0}


def test_cli_prints_the_library_scores(trained, tmp_path, capsys):
    checkpoint, model, tokenizer = trained
    text = tmp_path / "held-out.txt"
    text.write_text(held_out()[20000:21500], encoding="utf-8")
    next_line_task(tmp_path / "next-line.jsonl", n=12)
    args = ["evaluate", "--checkpoint", str(checkpoint.parent), "--text", str(text),
            "--tasks", str(tmp_path / "next-line.jsonl"), "--device", "cpu"]
    capsys.readouterr()
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = text_loss(model, tokenizer, read_texts(str(text)))
    assert result["text"][0]["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-6)
    assert result["text"][0]["tokens"] == expected.tokens
    task = evaluate_task(model, tokenizer, read_tasks(str(tmp_path / "next-line.jsonl")))
    assert result["tasks"][0]["n"] == 12
    assert result["tasks"][0]["acc"] == task.acc
    assert result["tasks"][0]["acc_norm"] == task.acc_norm
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "bits/byte" in table and f"{expected.bits_per_byte:.4f}" in table
    assert f"{task.acc:.4f} ± {task.acc_stderr:.4f}" in table


def test_cli_bad_task_line_is_one_line_exit_2(trained, tmp_path):
    checkpoint, _, _ = trained
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"context": "a", "choices": [" b", " c"], "answer": 0}) + "\n" +
                   json.dumps({"context": "a", "choices": [" b", " c"], "answer": 4}) + "\n",
                   encoding="utf-8")
    one_line_error(corpus("evaluate", "--checkpoint", str(checkpoint), "--tasks", str(bad)),
                   "bad.jsonl:2", "answer 4 is out of range")
