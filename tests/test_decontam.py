"""Benchmark decontamination: evaluation items planted inside real documents (CCNet pages,
Shakespeare, Chinese news sentences of ../shared/data) among clean ones, as exact copies,
partial copies, in other case, spacing, punctuation and width, and in Chinese, are every one a
`contaminated` reject naming the item and the n-gram, and no clean document is touched, through
the real CLI and Beam; the n-gram windows per script, the eval files and their errors, the size
bound and the fingerprint are tested directly."""

import ast
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from pipelines.core.contract import StageDir
from pipelines.core.job import Context
from pipelines.dedup.minhash import tokens
from pipelines.filters.decontam import (
    DecontaminationError,
    Decontaminator,
    EvalNgrams,
    EvalSetTooLarge,
    build_eval_set,
    ngrams,
    window_chars,
)
from pipelines.filters.stage import plan
from schemas.config import DecontaminateConfig, PipelineConfig
from tests.conftest import shared

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november " \
    "oscar papa quebec romeo sierra tango".split()


def lines(*parts) -> list[str]:
    return shared(*parts).read_text(encoding="utf-8").splitlines()


# --- the n-gram windows --------------------------------------------------------------------

def test_an_ngram_is_13_words_or_as_many_characters_as_13_words_of_each_script():
    assert window_chars(13) == {"cjk": 23, "hangul": 41, "thai": 63}
    for n, count in ((12, 0), (13, 1), (14, 2)):
        assert len(ngrams([" ".join(WORDS[:n])], 13).hashes) == count
    han = "".join(c for c in "".join(lines("langid", "zh.txt")[:2]) if "\u4e00" <= c <= "\u9fff")
    for n, count in ((22, 0), (23, 1), (25, 3)):
        assert len(ngrams([han[:n]], 13).hashes) == count
    korean = " ".join(lines("langid", "ko.txt")[:3])
    hangul = "".join(c for c in korean if "\uac00" <= c <= "\ud7af")
    assert [len(ngrams([hangul[:n]], 13).hashes) for n in (40, 41)] == [0, 1]
    thai = "".join(c for c in "".join(lines("langid", "th.txt")[:3]) if "\u0e00" <= c <= "\u0e7f")
    assert [len(ngrams([thai[:n]], 13).hashes) for n in (62, 63)] == [0, 1]
    # a mix: 10 words and 6 Han characters are worth 13.5 words, with 5 only 12.9
    assert len(ngrams([" ".join(WORDS[:10]) + han[:6]], 13).hashes) == 1
    assert len(ngrams([" ".join(WORDS[:10]) + han[:5]], 13).hashes) == 0


def test_ngrams_are_dedups_tokens_so_case_spacing_punctuation_and_width_do_not_count():
    text = lines("langid", "en.txt")[2]  # 23 words of a real sentence
    grams = ngrams([text], 13)
    assert len(grams.hashes) == len(tokens(text)) - 12
    assert [tokens(grams.gram(k)) for k in range(len(grams.hashes))] == \
        [tokens(text)[k:k + 13] for k in range(len(grams.hashes))]
    variants = [text.upper(), "  ".join(text.split()).replace(",", " ; "),
                "\n".join(text.split()) + "!!!", text.translate(FULLWIDTH)]
    for variant in variants:
        assert ngrams([variant], 13).hashes.tolist() == grams.hashes.tolist(), variant


def test_no_ngram_spans_two_texts():
    a, b = " ".join(WORDS[:7]), " ".join(WORDS[7:14])
    assert len(ngrams([a, b], 13).hashes) == 0
    both = ngrams([a + " " + b, " ".join(WORDS)], 13)
    assert len(both.hashes) == 2 + 8 and both.text.tolist() == [0] * 2 + [1] * 8
    assert both.hashes[0] == both.hashes[2]  # the same run, wherever it is


FULLWIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}  # "Ａ" for "A": NFKC folds it back


# --- eval files ----------------------------------------------------------------------------

def long_sentences(lang: str, count: int, least: int, skip: int = 0) -> list[str]:
    """Real sentences with at least `least` tokens (words, or characters of Chinese)."""
    out = [s for s in lines("langid", f"{lang}.txt") if len(tokens(s)) >= least]
    return out[skip:skip + count]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Eval files (JSONL, Parquet, text), and documents: real ones, some with an item planted,
    the others clean (two with a span one token short of an n-gram)."""
    folder = tmp_path_factory.mktemp("decontam")
    en = long_sentences("en", 7, 22)
    zh = long_sentences("zh", 2, 40)
    jsonl = folder / "bench.jsonl"
    with jsonl.open("w") as f:
        for i, (question, answer) in enumerate(((en[0], 1), (en[1], 0), (en[2], 2), (zh[0], 0))):
            f.write(json.dumps({"id": f"q{i}", "question": question, "choices": [
                "yes", "no", en[6] if i == 3 else "maybe"], "answer": answer},
                ensure_ascii=False) + "\n")
    parquet = folder / "bench.parquet"
    pq.write_table(pa.table({"prompt": [en[3], zh[1]], "label": [1, 2]}), parquet)
    text = folder / "bench.txt"  # a passage wrapped over two lines, after a title
    words = en[4].split()
    text.write_text("A title\n\n" + " ".join(words[:8]) + "\n" + " ".join(words[8:]) + "\n\n"
                    + en[5] + "\n")

    with gzip.open(shared("jsonl", "ccnet-cc_en_head-0091.jsonl.gz"), "rt") as f:
        ccnet = [json.loads(line)["text"] for line in f]
    play = shared("text", "tinyshakespeare.txt").read_text().split("\n\n")
    plays = ["\n\n".join(play[i:i + 6]) for i in range(0, 60, 6)]
    zh_docs = ["".join(lines("langid", "zh.txt")[i:i + 6]) for i in range(100, 160, 6)]

    def inside(doc: str, item: str) -> str:
        half = len(doc) // 2
        cut = doc.rfind(" ", 0, half) + 1 if " " in doc[:half] else half
        return doc[:cut] + item + " " + doc[cut:]

    zh1 = "".join(c for c in zh[1] if c.isalnum())
    contaminated = {
        "exact": en[0],
        "partial": inside(ccnet[0], " ".join(en[1].split()[4:19])),  # 15 words of 22+
        "case-spacing-punctuation": inside(ccnet[1], "  \n ".join(en[2].upper().split())
                                           .replace(",", "") + "?!"),
        "fullwidth-parquet": inside(plays[0], en[3].translate(FULLWIDTH)),
        "wrapped-text-file": inside(ccnet[2], en[4]),
        "text-file-line": inside(plays[1], en[5].lower()),
        "chinese-exact": inside(zh_docs[0], zh[0]),
        "chinese-partial-punctuation": inside(zh_docs[1], "，".join(
            [zh1[3:14], zh1[14:28]])),  # 25 characters of 40+, a comma in the middle
        "choices-field": inside(ccnet[3], en[6]),
    }
    clean = {f"ccnet-{i}": t for i, t in enumerate(ccnet[4:], 4)}
    clean |= {f"play-{i}": t for i, t in enumerate(plays[2:], 2)}
    clean |= {f"zh-{i}": t for i, t in enumerate(zh_docs[2:], 2)}
    clean["near-miss-words"] = inside(ccnet[4], " ".join(en[1].split()[4:16]))  # 12 words
    clean["near-miss-chinese"] = inside(zh_docs[2], zh1[3:25])  # 22 characters
    config = DecontaminateConfig(paths=(str(jsonl), str(parquet), str(text)))
    return {"config": config, "contaminated": contaminated, "clean": clean, "jsonl": jsonl,
            "parquet": parquet, "text": text, "en": en}


def test_eval_items_are_named_by_file_line_row_and_id(planted):
    eval_set = build_eval_set(planted["config"])
    labels = {eval_set.label(i) for i in range(len(eval_set.item_ids))}
    jsonl, parquet, text = planted["jsonl"], planted["parquet"], planted["text"]
    assert labels == {f"{jsonl}:{i + 1} (id q{i})" for i in range(4)} | {
        f"{parquet} row 0", f"{parquet} row 1", f"{text}:3", f"{text}:4", f"{text}:6"}
    stats = eval_set.stats  # texts: 4 questions, 12 choices, 2 prompts, 3 blocks of text
    assert (stats.files, stats.items, stats.short_items) == (3, 21, 12)
    assert stats.ngrams == len(eval_set) > 100
    only_choices = build_eval_set(DecontaminateConfig(paths=(str(jsonl),), fields=("choices",)))
    assert {only_choices.label(int(i)) for i in only_choices.item} == {f"{jsonl}:4 (id q3)"}


def test_every_planted_item_is_caught_and_no_clean_document_is_touched(planted, tmp_path):
    url = str(tmp_path / "set.npz")
    build_eval_set(planted["config"]).save(url)
    decontaminator = Decontaminator(planted["config"], url)
    docs = {**planted["contaminated"], **planted["clean"]}
    results = decontaminator.apply([({"id": k, "text": t}, None) for k, t in docs.items()])
    caught = {doc["id"]: r.detail for doc, r in results if r is not None}
    assert set(caught) == set(planted["contaminated"])
    assert all(r is None or r.reason == "contaminated" for _, r in results)
    jsonl, parquet, text, en = (planted[k] for k in ("jsonl", "parquet", "text", "en"))
    exact = len(tokens(en[0])) - 12
    assert caught["exact"].startswith(f"{exact} 13-gram(s) of 1 eval item(s); first: "
                                      f"{jsonl}:1 (id q0): ")
    partial = len(tokens(" ".join(en[1].split()[4:19]))) - 12
    label = f"{jsonl}:2 (id q1)"
    assert caught["partial"].startswith(f"{partial} 13-gram(s) of 1 eval item(s); first: {label}")
    gram = ast.literal_eval(caught["partial"].split(f"{label}: ", 1)[1])
    run = tokens(gram)
    assert len(run) == 13 and " ".join(run) in " ".join(tokens(en[1]))  # the item's, as folded
    assert f"first: {parquet} row 0" in caught["fullwidth-parquet"]
    assert f"first: {text}:3: " in caught["wrapped-text-file"]  # its first line, then the next
    assert f"first: {text}:6: " in caught["text-file-line"]
    assert f"first: {jsonl}:1 (id q0)" not in caught["choices-field"]
    assert f"first: {jsonl}:4 (id q3)" in caught["choices-field"]  # a string of a list field
    assert f"first: {jsonl}:4 (id q3)" in caught["chinese-exact"]
    assert f"first: {parquet} row 1" in caught["chinese-partial-punctuation"]
    # a rejection from the chain stays as it was, and an empty batch is no error
    earlier = ({"id": "x", "text": planted["contaminated"]["exact"]}, ("too_short", "1 < 2"))
    assert decontaminator.apply([earlier]) == [earlier]


def test_min_matches_counts_distinct_shared_ngrams(planted, tmp_path):
    url = str(tmp_path / "set.npz")
    build_eval_set(planted["config"]).save(url)
    span = " ".join(tokens(planted["en"][1])[:14])  # 14 tokens: 2 n-grams
    doc = {"id": "d", "text": f"Before. {span} after. {span}"}
    for least, dropped in ((1, True), (2, True), (3, False)):  # 2 distinct, each twice
        config = DecontaminateConfig(paths=planted["config"].paths, min_matches=least)
        [(_, rejection)] = Decontaminator(config, url).apply([(doc, None)])
        assert (rejection is not None) == dropped


def test_the_eval_set_survives_its_file(planted, tmp_path):
    built = build_eval_set(planted["config"])
    built.save(str(tmp_path / "s.npz"))
    loaded = EvalNgrams.load(str(tmp_path / "s.npz"))
    assert loaded.hashes.tolist() == built.hashes.tolist()
    assert [loaded.label(i) for i in range(len(loaded.item_ids))] == \
        [built.label(i) for i in range(len(built.item_ids))]


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "absent.jsonl", "absent.jsonl: no such file"),
    (lambda d: shared("warc", "dolma-sample-0000.warc.gz"), "is a warc file: give eval items"),
    (lambda d: write(d / "bad.jsonl", '{"question": "fine"}\n{"question": oops}\n'),
     "bad.jsonl:2: not valid JSON"),
    (lambda d: write(d / "list.jsonl", '{"q": "x"}\n["a list"]\n'),
     "list.jsonl:2: a JSON list, not an object"),
    (lambda d: write(d / "empty.txt", "\n\n  \n"), "empty.txt: no eval item in it"),
    (lambda d: write(d / "latin1.txt", b"caf\xe9 " * 20), "latin1.txt: not UTF-8 text"),
    (lambda d: write(d / "cut.parquet", b"PAR1" + b"\0" * 64), "not a readable Parquet file"),
])
def test_a_bad_eval_file_is_one_clear_error(tmp_path, make, needle):
    with pytest.raises(DecontaminationError) as err:
        build_eval_set(DecontaminateConfig(paths=(str(make(tmp_path)),)))
    assert needle in str(err.value) and "\n" not in str(err.value)


def write(path, content):
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def test_a_field_no_record_has_and_a_set_without_ngrams_are_errors(planted):
    with pytest.raises(DecontaminationError, match="no record has the field"):
        build_eval_set(DecontaminateConfig(paths=(str(planted["jsonl"]),), fields=("quesion",)))
    with pytest.raises(DecontaminationError, match="no column quesion"):
        build_eval_set(DecontaminateConfig(paths=(str(planted["parquet"]),),
                                           fields=("quesion",)))
    with pytest.raises(DecontaminationError, match="lower --decontaminate-ngram"):
        build_eval_set(DecontaminateConfig(paths=(str(planted["jsonl"]),), ngram=200))


def test_over_the_size_bound_is_one_line_exit_2_naming_the_option(planted, tmp_path, capsys):
    with pytest.raises(EvalSetTooLarge):
        build_eval_set(DecontaminateConfig(paths=planted["config"].paths, max_ngrams=50))
    docs = write(tmp_path / "docs.jsonl", json.dumps({"text": "a document"}) + "\n")
    for extra, needle in ((["--decontaminate-max-ngrams", "50"], "raise it with "
                           "--decontaminate-max-ngrams N"),
                          (["--decontaminate-field", "quesion"], "no record has the field")):
        assert main(["build", "--input", str(docs), "--output", str(tmp_path / "o"),
                     "--decontaminate", *planted["config"].paths, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("corpus: error: --decontaminate: ") and \
            needle in err[0], err
    assert not (tmp_path / "o").exists()


def test_the_eval_files_content_is_in_the_filter_stages_fingerprint(planted, tmp_path):
    def inputs(path):
        config = PipelineConfig.from_dict({"filter": {"decontaminate": {"paths": [str(path)]}}})
        return plan(Context(str(tmp_path), config)).inputs

    copy = write(tmp_path / "eval.jsonl", planted["jsonl"].read_text())
    before = inputs(copy)
    assert [i["path"] for i in before] == [str(copy)]
    write(copy, planted["jsonl"].read_text().replace("q0", "q9"))
    assert inputs(copy) != before  # same path, new content: the stage runs again


# --- the real thing ------------------------------------------------------------------------

def test_a_build_drops_the_planted_documents_as_contaminated(planted, tmp_path, capsys):
    docs = {**planted["contaminated"], **planted["clean"]}
    inputs = tmp_path / "docs.jsonl"
    inputs.write_text("".join(json.dumps({"id": k, "text": t, "url": f"https://d.test/{k}"},
                                         ensure_ascii=False) + "\n" for k, t in docs.items()))
    # rules that drop none of these documents: what goes is decontamination's doing
    settings = tmp_path / "rules.toml"
    settings.write_text("[filter.langid]\nbackends = ['fasttext']\n[filter.pii]\nenabled = false\n"
                        "[filter.quality]\nmin_chars = 0\nmin_alpha_ratio = 0\n" + "".join(
                            f"[filter.quality.{s}]\nenabled = false\n" for s in (
                                "gopher_repetition", "gopher_quality", "c4", "fineweb")))
    out = tmp_path / "out"
    assert main(["build", "--input", str(inputs), "--output", str(out), "--until", "filter",
                 "--config", str(settings), "--decontaminate", *planted["config"].paths]) == 0
    assert "decontaminate: 3 eval file(s), 21 texts" in capsys.readouterr().err
    stage = StageDir(str(out), "filter")
    manifest = stage.manifest()
    rejected = pa.concat_tables([pq.read_table(f) for f in stage.files("rejected")]).to_pylist()
    kept = pa.concat_tables([pq.read_table(f) for f in stage.files("data")]).to_pylist()
    assert {r["id"] for r in rejected} == set(planted["contaminated"])
    assert {r["reason"] for r in rejected} == {"contaminated"}
    assert {d["id"] for d in kept} == set(planted["clean"])
    assert all("eval item(s); first: " in r["detail"] for r in rejected)
    counts = manifest.counts
    assert counts.rejected == {"contaminated": len(planted["contaminated"])}
    assert counts.records_in == counts.records_out + len(planted["contaminated"])
    assert manifest.metrics.counters["filter/dropped_contaminated"] == 9
    assert manifest.decontaminate["ngrams"] == len(build_eval_set(planted["config"]))
    assert [i["path"] for i in manifest.inputs if i.get("eval_items")] == \
        list(planted["config"].paths)
    assert not (out / "filter" / "work").exists()  # the eval set's file is gone with the job
