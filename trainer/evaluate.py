"""A model judged on text it has not seen and on multiple-choice questions: the numbers an
ablation compares.

    model, tokenizer = load("out/train")
    score = text_loss(model, tokenizer, read_texts("held-out.jsonl"))
    print(score.loss, score.bits_per_byte)
    print(evaluate_task(model, tokenizer, read_tasks("hellaswag.jsonl")))

**Held-out text.** Each text is one document, encoded on its own and preceded by the
end-of-document token, as the token shards present a document to training (every document there
follows the previous one's end token). Every token of the text is predicted exactly once; the end
token after it is not scored. A text longer than the context is scored in windows of the block
size (`windows`), each ending just before the last token it predicts: by default their
predictions do not overlap (the first window predicts `block_size` tokens from the end token on,
each next one the next `block_size` tokens, and the last, shorter one takes as many tokens
before its own as fill the block: lm-eval's rolling log-likelihood), or with `stride` < block
size they slide: each window after the first predicts `stride` new tokens with the
`block_size - stride` tokens before them as context (better estimates, `block_size / stride`
times the compute). `loss` is nats per token, which depends on the tokenizer; `bits_per_byte`
(total nats / ln 2 / UTF-8 bytes of the texts) does not, so it compares models with different
tokenizers.

**Multiple choice.** One JSONL format, `{"context": str, "choices": [str, ...], "answer": int}`
(an optional `"id"`). A choice is scored by the log-likelihood of its tokens after the context,
encoded as lm-evaluation-harness encodes a (context, continuation) pair: spaces ending the context
move to the start of the continuation (a leading space belongs to the choice: write `" Paris"`,
not `"Paris"`), the context is encoded alone, and the choice's tokens are those of
context + choice after the context's token count. The sequence starts with the end-of-document
token and the context is cut from the left to fit the block size (a choice longer than the block
is scored in windows, as a text). `acc` picks the choice of highest log-likelihood, `acc_norm`
the highest log-likelihood per UTF-8 byte of the choice (lm-eval's `acc_norm` divides by
characters: the same for ASCII); ties go to the first. Their standard error is the sample
standard error of the mean of 0/1 scores, as lm-eval reports it: sqrt(p(1 - p) / (n - 1)).

Scores are deterministic (eval mode, no dropout, no sampling); batching pads on the right, which
a causal model never attends to.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from trainer.generate import resolve_device
from trainer.hf import end_of_document_token

TEXT_SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".parquet")
TASK_SUFFIXES = (".jsonl", ".jsonl.gz")


# --- reading -------------------------------------------------------------------------------

def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _jsonl(path: str):
    """(line number, object) of every non-blank line; a line that is not a JSON object is a
    ValueError naming the file and line."""
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got "
                                 f"{type(record).__name__}")
            yield number, record


def read_texts(path: str, field: str = "text") -> list[str]:
    """The documents of a file: a `.txt` file is one document (all of it); `.jsonl` (or
    `.jsonl.gz`) has one per line and `.parquet` one per row, in their `field`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text file not found: {path}")
    try:
        if path.endswith(".txt"):
            with open(path, encoding="utf-8") as f:
                return [f.read()]
        if path.endswith((".jsonl", ".jsonl.gz")):
            texts = []
            for number, record in _jsonl(path):
                if not isinstance(record.get(field), str):
                    raise ValueError(f"{path}:{number}: no {field!r} string field")
                texts.append(record[field])
            return texts
        if path.endswith(".parquet"):
            schema = pq.read_schema(path)
            if field not in schema.names:
                raise ValueError(f"{path}: no {field!r} column (columns: {schema.names})")
            texts = pq.read_table(path, columns=[field]).column(field).to_pylist()
            for row, text in enumerate(texts):
                if not isinstance(text, str):
                    raise ValueError(f"{path}: row {row} has no {field!r} string")
            return texts
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    raise ValueError(f"{path}: expected a {', '.join(TEXT_SUFFIXES)} file")


@dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    answer: int
    id: str | None = None
    where: str = ""  # file:line, for errors


def question(record: dict, where: str = "") -> Question:
    """A task record checked; a ValueError starting with `where` says what is wrong."""
    def bad(what):
        raise ValueError(f"{where}: {what}" if where else what)

    for name in ("context", "choices", "answer"):
        if name not in record:
            bad(f"missing field {name!r} (a record is {{\"context\": str, \"choices\": "
                f"[str, ...], \"answer\": int}})")
    context, choices, answer = record["context"], record["choices"], record["answer"]
    if not isinstance(context, str):
        bad(f"context must be a string, got {type(context).__name__}")
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        bad("choices must be a list of strings")
    if len(choices) < 2:
        bad(f"{len(choices)} choice(s); a question needs at least 2")
    if any(not c for c in choices):
        bad(f"choice {[bool(c) for c in choices].index(False)} is empty")
    if not isinstance(answer, int) or isinstance(answer, bool):
        bad(f"answer must be a whole number (an index into choices), got {answer!r}")
    if not 0 <= answer < len(choices):
        bad(f"answer {answer} is out of range for {len(choices)} choices (0..{len(choices) - 1})")
    ident = record.get("id")
    return Question(context, tuple(choices), answer, None if ident is None else str(ident), where)


def read_tasks(path: str) -> list[Question]:
    """The questions of a task file (JSONL, optionally gzipped), each checked."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"task file not found: {path}")
    if not path.endswith(TASK_SUFFIXES):
        raise ValueError(f"{path}: expected a .jsonl task file (one question a line)")
    questions = [question(record, f"{path}:{number}") for number, record in _jsonl(path)]
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


# --- scoring -------------------------------------------------------------------------------

@contextmanager
def _scoring(model):
    """Eval mode (no dropout) and no gradients inside; the model's own mode given back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _place(model, device: str | None) -> str:
    if device is None:
        return str(next(model.parameters()).device)
    device = resolve_device(device)
    model.to(device)
    return device


def windows(ids: list[int], block_size: int, start: int = 1, stride: int | None = None):
    """(inputs, targets, first scored position) windows that predict each of `ids[start:]`
    exactly once from the tokens before it: the first window predicts up to `block_size`
    tokens, each next one up to `stride` (default: the block size), and every window is the
    `block_size` tokens (fewer at the start of `ids`) that end just before its last target."""
    stride = stride or block_size
    done, last, step = start - 1, len(ids) - 1, block_size  # ids[start..done] are predicted
    while done < last:
        end = min(done + step, last)  # this window predicts ids[done + 1 .. end]
        lo = max(0, end - block_size)
        yield ids[lo:end], ids[lo + 1:end + 1], done - lo
        done, step = end, stride


def _logprob_sums(model, keyed_windows, count: int, batch_size: int, device: str) -> list[float]:
    """Per key (0..count-1): the summed log-probability (nats, float64) of the scored targets
    of its (key, (inputs, targets, first)) windows, `batch_size` windows a right-padded batch."""
    sums = [0.0] * count
    batch = []

    def run():
        width = max(len(inputs) for _, (inputs, _, _) in batch)
        x = torch.zeros(len(batch), width, dtype=torch.long)
        y = torch.zeros(len(batch), width, dtype=torch.long)
        for i, (_, (inputs, targets, _)) in enumerate(batch):
            x[i, :len(inputs)] = torch.tensor(inputs)
            y[i, :len(targets)] = torch.tensor(targets)
        logits, _ = model(x.to(device))
        logprobs = -F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(),
                                    reduction="none").view(y.shape).double().cpu()
        for i, (key, (_, targets, first)) in enumerate(batch):
            sums[key] += float(logprobs[i, first:len(targets)].sum())
        batch.clear()

    with _scoring(model):
        for item in keyed_windows:
            batch.append(item)
            if len(batch) == batch_size:
                run()
        if batch:
            run()
    return sums


def _block(model, block_size: int | None) -> int:
    limit = model.config.block_size
    if block_size is None:
        return limit
    if not 1 <= block_size <= limit:
        raise ValueError(f"block_size must be within 1..{limit} (the model's context), got "
                         f"{block_size}")
    return block_size


@dataclass
class TextScore:
    documents: int
    tokens: int  # predicted tokens (the texts' own, not the end tokens)
    bytes: int  # UTF-8 bytes of the texts
    nll: float  # total negative log-likelihood, nats

    @property
    def loss(self) -> float:
        """Mean nats per token (tokenizer-dependent)."""
        return self.nll / self.tokens

    @property
    def bits_per_byte(self) -> float:
        """Bits per UTF-8 byte: comparable across tokenizers."""
        return self.nll / math.log(2) / self.bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "loss": self.loss, "bits_per_byte": self.bits_per_byte}


def text_loss(model, tokenizer, texts, block_size: int | None = None, batch_size: int = 8,
              device: str | None = None, stride: int | None = None) -> TextScore:
    """Loss per token and bits per byte of `texts` (each one document); `block_size` (at most
    the model's, the default) is the window and `stride` (default: the block size, windows
    whose predictions do not overlap) the tokens each window after the first predicts."""
    block = _block(model, block_size)
    if stride is not None and not 1 <= stride <= block:
        raise ValueError(f"stride must be within 1..{block} (the block size), got {stride}")
    device = _place(model, device)
    eot = tokenizer.token_to_id(end_of_document_token(tokenizer))
    texts = list(texts)
    encodings = tokenizer.encode_batch(texts)
    tokens = sum(len(e.ids) for e in encodings)
    if not tokens:
        raise ValueError("no text to score (every text is empty)")
    keyed = ((k, w) for k, e in enumerate(encodings)
             for w in windows([eot, *e.ids], block, stride=stride))
    sums = _logprob_sums(model, keyed, len(texts), batch_size, device)
    return TextScore(len(texts), tokens, sum(len(t.encode("utf-8")) for t in texts), -sum(sums))


def choice_tokens(tokenizer, context: str, choice: str) -> tuple[list[int], list[int]]:
    """(context ids, choice ids) as lm-evaluation-harness splits a pair: trailing spaces of the
    context move to the choice; the choice's ids are those of context + choice after the
    context's own token count."""
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, choice = context[:-spaces], context[-spaces:] + choice
    context_ids = tokenizer.encode(context).ids
    whole = tokenizer.encode(context + choice).ids
    return context_ids, whole[len(context_ids):]


def choice_logliks(model, tokenizer, questions: list[Question], batch_size: int = 8,
                   device: str | None = None) -> list[list[float]]:
    """The log-likelihood (nats) of every choice of every question given its context: one
    window of the block size ending at the choice's last token (the context cut from the
    left); a choice longer than the block takes more windows, as a text does."""
    block = _block(model, None)
    device = _place(model, device)
    eot = tokenizer.token_to_id(end_of_document_token(tokenizer))
    sequences = []
    for q in questions:
        for i, choice in enumerate(q.choices):
            context_ids, ids = choice_tokens(tokenizer, q.context, choice)
            if not ids:
                raise ValueError(f"{q.where}: choice {i} encodes to no tokens of its own")
            sequences.append(([eot, *context_ids, *ids], len(ids)))
    keyed = ((k, w) for k, (ids, n) in enumerate(sequences)
             for w in windows(ids, block, start=len(ids) - n))
    sums = _logprob_sums(model, keyed, len(sequences), batch_size, device)
    out, at = [], 0
    for q in questions:
        out.append(sums[at:at + len(q.choices)])
        at += len(q.choices)
    return out


def _stderr(p: float, n: int) -> float | None:
    """Sample standard error of the mean of n 0/1 scores of mean p (None below 2)."""
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None


def _first_max(values) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


@dataclass
class TaskScore:
    n: int
    acc: float
    acc_stderr: float | None
    acc_norm: float
    acc_norm_stderr: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def task_accuracy(questions: list[Question], logliks: list[list[float]]) -> TaskScore:
    """acc (highest log-likelihood) and acc_norm (highest per byte of the choice)."""
    right = right_norm = 0
    for q, scores in zip(questions, logliks, strict=True):
        right += _first_max(scores) == q.answer
        per_byte = [s / len(c.encode("utf-8")) for s, c in zip(scores, q.choices)]
        right_norm += _first_max(per_byte) == q.answer
    n = len(questions)
    acc, acc_norm = right / n, right_norm / n
    return TaskScore(n, acc, _stderr(acc, n), acc_norm, _stderr(acc_norm, n))


def evaluate_task(model, tokenizer, questions: list[Question], batch_size: int = 8,
                  device: str | None = None) -> TaskScore:
    return task_accuracy(questions, choice_logliks(model, tokenizer, questions, batch_size,
                                                   device))


# --- standard benchmarks in the task format ------------------------------------------------

def _hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow text carries markers such as `[title]` and `[step]`: a title marker
    ends a sentence, the others go (lm-eval's preprocessing)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_record(doc: dict) -> dict:
    """A HellaSwag record (`hellaswag_val.jsonl` of rowanz/hellaswag, or the Hugging Face
    `Rowan/hellaswag` rows: `activity_label`, `ctx_a`, `ctx_b` or `ctx`, `endings`, `label`)
    as a task record: context "<activity>: <ctx_a> <Ctx_b>", the endings after a space."""
    if "ctx_a" in doc:
        ctx = doc["ctx_a"] + " " + doc.get("ctx_b", "").capitalize()
    else:
        ctx = doc["ctx"]
    label = doc.get("activity_label")
    context = _hellaswag_clean(f"{label}: {ctx}" if label else ctx)
    record = {"context": context, "choices": [" " + _hellaswag_clean(e) for e in doc["endings"]],
              "answer": int(doc["label"])}
    if doc.get("ind") is not None:
        record["id"] = str(doc["ind"])
    return record


def arc_record(doc: dict) -> dict:
    """An ARC record, the Hugging Face `allenai/ai2_arc` row (`question`, `choices: {text,
    label}`, `answerKey`) or AI2's JSONL (`question: {stem, choices: [{text, label}]}`):
    context "Question: ...\\nAnswer:", each answer after a space."""
    if isinstance(doc["question"], dict):
        stem = doc["question"]["stem"]
        texts = [c["text"] for c in doc["question"]["choices"]]
        labels = [c["label"] for c in doc["question"]["choices"]]
    else:
        stem, texts, labels = doc["question"], doc["choices"]["text"], doc["choices"]["label"]
    record = {"context": f"Question: {stem}\nAnswer:", "choices": [" " + t for t in texts],
              "answer": labels.index(doc["answerKey"])}
    if doc.get("id") is not None:
        record["id"] = str(doc["id"])
    return record


def piqa_record(doc: dict) -> dict:
    """A PIQA record (`goal`, `sol1`, `sol2`, `label`): context "Question: ...\\nAnswer:"."""
    return {"context": f"Question: {doc['goal']}\nAnswer:",
            "choices": [" " + doc["sol1"], " " + doc["sol2"]], "answer": int(doc["label"])}


CONVERTERS = {"hellaswag": hellaswag_record, "arc": arc_record, "piqa": piqa_record}


def convert_file(kind: str, source: str, out: str) -> int:
    """Write benchmark `kind`'s JSONL `source` as a task file `out`; returns the questions.
    Every record written is checked as `read_tasks` checks it; `out` appears whole or not at
    all."""
    if kind not in CONVERTERS:
        raise ValueError(f"unknown benchmark {kind!r}; known: {sorted(CONVERTERS)}")
    count, partial = 0, out + ".partial"
    try:
        with open(partial, "w", encoding="utf-8") as f:
            for number, doc in _jsonl(source):
                where = f"{source}:{number}"
                try:
                    record = CONVERTERS[kind](doc)
                except (KeyError, TypeError, ValueError, AttributeError) as err:
                    raise ValueError(f"{where}: not in {kind}'s format ({type(err).__name__}: "
                                     f"{err})") from None
                question(record, where)
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        os.replace(partial, out)  # a failed conversion leaves no half task file
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return count


if __name__ == "__main__":  # python -m trainer.evaluate hellaswag hellaswag_val.jsonl out.jsonl
    if len(sys.argv) != 4:
        sys.exit(f"usage: python -m trainer.evaluate {{{','.join(CONVERTERS)}}} SOURCE.jsonl "
                 f"OUT.jsonl")
    try:
        written = convert_file(*sys.argv[1:])
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"wrote {written} questions to {sys.argv[3]}")
