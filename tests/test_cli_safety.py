"""The user's data is safe, tried as a hostile new user would: inputs inside the output, two
builds at once, bad numbers and language codes, unwritable and remote outputs, empty results,
damaged datasets; and `corpus why` explains where a URL went."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from flows.cli import main
from tests.conftest import shared

CORPUS = str(Path(sys.executable).with_name("corpus"))
FAST = ["--running-mode", "in_memory", "--workers", "1"]


def corpus(*args, timeout=300):
    return subprocess.run([CORPUS, *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(out, *needles, code=2):
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("corpus: error:"), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    errors = [line for line in lines if line.startswith("corpus: error:")]
    assert len(errors) == 1, out.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("args,needle", [
    (["build", "--input", "x", "--output", "y", "--workers", "0"], "--workers"),
    (["build", "--input", "x", "--output", "y", "--workers", "-1"], "--workers"),
    (["demo", "--workers", "0"], "--workers"),
    (["train", "--dataset", "d", "--steps", "-5"], "--steps"),
    (["train", "--dataset", "d", "--nproc", "0"], "--nproc"),
    (["build", "--input", "x", "--output", "y", "--extract-timeout", "0"], "--extract-timeout"),
])
def test_bad_numbers_are_one_line_errors(args, needle):
    one_line_error(corpus(*args), needle, "at least 1" if "timeout" not in needle else "more than")


def test_unknown_language_codes_are_refused_before_anything_runs(tmp_path):
    warc = str(shared("warc", "dolma-sample-0000.warc.gz"))
    line = one_line_error(corpus("build", "--input", warc, "--output", str(tmp_path / "o"),
                                 "--langs", "xx,klingon,EN"), "xx", "klingon")
    assert "EN" not in line.split("code(s)")[1].split(":")[0]  # EN is English, accepted
    assert not (tmp_path / "o").exists()


def test_a_rule_switched_off_that_no_rule_has_is_refused_before_anything_runs(tmp_path):
    warc = str(shared("warc", "dolma-sample-0000.warc.gz"))
    line = one_line_error(corpus("build", "--input", warc, "--output", str(tmp_path / "o"),
                                 "--rules-off", "fineweb_line_punct,line_punct"),
                          "--rules-off", "no quality rule rejects with line_punct;")
    assert "fineweb_line_punct," in line.split("reasons are")[1]  # the list to choose from
    assert not (tmp_path / "o").exists()


def test_bad_language_id_settings_are_refused_before_anything_runs(tmp_path):
    warc = str(shared("warc", "dolma-sample-0000.warc.gz"))
    junk = tmp_path / "model.bin"
    junk.write_text("not a fastText model")
    for extra, needle in ((["--lid-model", str(junk)], "wrong file format"),
                          (["--lid-model", str(tmp_path / "absent.bin")], "not found"),
                          (["--lid-backends", "cld3"], "Input should be 'fasttext' or 'lingua'")):
        one_line_error(corpus("build", "--input", warc, "--output", str(tmp_path / "o"), *extra),
                       needle)
    assert not (tmp_path / "o").exists()


def test_an_input_inside_the_output_is_refused_and_nothing_is_removed(tmp_path):
    out = tmp_path / "ow"
    out.mkdir()
    shutil.copy(shared("warc", "dolma-sample-0000.warc.gz"), out / "a.warc.gz")
    (out / "notes.txt").write_text("my notes")
    before = sorted(p.name for p in out.iterdir())
    for given in (str(out / "a.warc.gz"), str(out), f"file://{out}/a.warc.gz"):
        one_line_error(corpus("build", "--input", given, "--output", str(out), "--overwrite"),
                       "inside the output folder")
    assert sorted(p.name for p in out.iterdir()) == before
    assert (out / "notes.txt").read_text() == "my notes"


def test_an_unwritable_output_is_one_line():
    warc = str(shared("warc", "dolma-sample-0000.warc.gz"))
    one_line_error(corpus("build", "--input", warc, "--output", "/sys/corpus-test-output"),
                   "not writable")


def test_a_second_build_into_the_same_folder_is_refused(tmp_path):
    warc = str(shared("warc", "dolma-sample-0000.warc.gz"))
    out = tmp_path / "ds"
    first = subprocess.Popen([CORPUS, "build", "--input", warc, "--output", str(out),
                              "--until", "filter", *FAST],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".corpus.lock").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first build never took its lock"
            time.sleep(0.05)
        second = corpus("build", "--input", warc, "--output", str(out), "--overwrite")
        one_line_error(second, "in use by corpus build", f"pid {first.pid}")
        stdout, stderr = first.communicate(timeout=300)
        assert first.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
    finally:
        if first.poll() is None:
            first.kill()
    assert (out / "filter" / "_SUCCESS").exists() and not (out / ".corpus.lock").exists()


def test_a_build_whose_corpus_is_empty_fails_naming_the_stage(tmp_path, capsys):
    warc = str(shared("warc", "dolma-sample-0000.warc.gz"))
    # Somali is a language ID label, and none of these English pages is in it
    code = main(["build", "--input", warc, "--output", str(tmp_path / "ds"), "--langs", "so",
                 *FAST])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("corpus: error:")]
    assert len(errors) == 1 and "the filter stage dropped all" in errors[0], captured.err
    assert "lang_not_kept=" in errors[0] and "e.g. " in errors[0]  # one example, with its detail
    assert "extract" in captured.out  # the table is printed first
    assert not (tmp_path / "ds" / "dedup").exists()  # nothing ran after the empty stage


def test_a_wet_file_gives_documents(tmp_path, capsys):
    wet = str(shared("warc", "cc-2024-22-whirlwind.warc.wet.gz"))
    assert main(["build", "--input", wet, "--output", str(tmp_path / "ds"), "--until",
                 "extract", *FAST]) == 0
    manifest = json.loads((tmp_path / "ds" / "extract" / "manifest.json").read_text())
    assert manifest["counts"]["records_out"] >= 1
    table = pq.read_table(tmp_path / "ds" / "extract" / "data").to_pylist()
    assert all(d["source_format"] == "wet" and d["text"] for d in table)


def write_jsonl(fs_url: str, docs: list[dict]) -> None:
    with fsspec.open(fs_url, "w") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")


def langid_docs(n_per_lang=3):
    docs = []
    for lang in ("en", "de", "fr"):
        lines = shared("langid", f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        for i in range(n_per_lang):
            docs.append({"id": f"{lang}-{i}", "url": f"https://{lang}.example.test/{i}",
                         "text": "\n".join(lines[i * 12:(i + 1) * 12]), "source": "leipzig"})
    return docs


def test_memory_urls_end_to_end(capsys):
    write_jsonl("memory://e2e-in/docs.jsonl", langid_docs())
    code = main(["build", "--input", "memory://e2e-in/docs.jsonl", "--output",
                 "memory://e2e-probe/out", "--until", "shard"])
    assert code == 0, capsys.readouterr().err
    fs = fsspec.filesystem("memory")
    assert fs.exists("/e2e-probe/out/dataset.json")
    assert fs.exists("/e2e-probe/out/shard/_SUCCESS")
    with fs.open("/e2e-probe/out/shard/diversity.json", "r") as f:  # written by the Beam job
        assert set(json.load(f)["snapshots"]["local"]["languages"]) == {"en", "de", "fr"}
    rows = []
    for path in fs.find("/e2e-probe/out/shard/data"):
        with fs.open(path, "rb") as f:
            rows += pq.read_table(f).to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(d["id"] for d in langid_docs())
    assert all(json.loads(r["metadata"]) == {"source": "leipzig"} for r in rows)
    assert not os.path.exists("memory:") and not os.path.exists("e2e-probe")


def test_file_urls_end_to_end_with_the_corpus_partitioned_by_language(tmp_path, capsys):
    write_jsonl(f"file://{tmp_path}/in/docs.jsonl", langid_docs(2))
    out = f"file://{tmp_path}/out"
    assert main(["build", "--input", f"file://{tmp_path}/in", "--output", out, "--until",
                 "shard", "--partition-by-lang", *FAST]) == 0
    data = tmp_path / "out" / "shard" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["de", "en", "fr"]
    for lang in ("de", "en", "fr"):
        rows = pq.read_table(next((data / lang).glob("corpus-*.parquet"))).to_pylist()
        assert rows and {r["lang"] for r in rows} == {lang}
    assert not Path("file:").exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("why") / "ds"
    assert main(["build", "--input", str(shared("warc")), "--output", str(out), *FAST]) == 0
    return out


def why(dataset, url):
    out = corpus("why", url, "--dataset", str(dataset), "--json")
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else None


def test_why_explains_kept_rejected_and_duplicate_urls(dataset):
    corpus_rows = pq.read_table(dataset / "shard" / "data").to_pylist()
    kept = corpus_rows[0]
    code, fates = why(dataset, kept["url"])
    assert code == 0 and fates[0]["outcome"] == "kept"
    assert fates[0]["location"].startswith("shard/data/corpus-")
    # the dolma sample captured allenai.org twice: one capture is an exact duplicate
    dups = [r for r in pq.read_table(dataset / "dedup" / "rejected").to_pylist()
            if r["reason"] == "exact_duplicate"]
    assert dups
    code, fates = why(dataset, dups[0]["url"])
    assert code == 0
    dup = next(f for f in fates if f["outcome"] == "rejected")
    assert dup["stage"] == "dedup" and dup["reason"] == "exact_duplicate"
    assert dup["kept_instead"]["id"] == dups[0]["related_id"]
    assert dup["kept_instead"]["url"]
    rejected = pq.read_table(dataset / "extract" / "rejected").to_pylist()
    target = next(r for r in rejected if r["url"])
    code, fates = why(dataset, target["url"])
    assert code == 0 and any(f["stage"] == "extract" and f["reason"] == target["reason"]
                             for f in fates)
    text = corpus("why", kept["url"], "--dataset", str(dataset)).stdout
    assert "kept in the corpus" in text
    code, fates = why(dataset, "https://nowhere.invalid/page")
    assert code == 1 and fates == []


def test_training_refuses_damaged_or_too_small_datasets(dataset, tmp_path):
    one_line_error(corpus("train", "--dataset", str(dataset), "--block-size", "10000000"),
                   "block_size")
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    victim = sorted((broken / "tokenize" / "data").glob("train-*.bin"))[0]
    victim.unlink()
    one_line_error(corpus("train", "--dataset", str(broken)), "damaged", victim.name)


def test_ctrl_c_stops_everything_in_one_line_and_the_rerun_resumes(tmp_path):
    """Ctrl-C reaches the whole foreground process group, as a terminal sends it."""
    import signal

    from flows.interrupt import descendants

    out = tmp_path / "ds"
    args = [CORPUS, "build", "--input", str(shared("warc")), "--output", str(out), "--until",
            "filter"]
    run = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "extract").exists():  # the flow is running its first Beam job
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the build never started its extract stage"
            time.sleep(0.02)
        started = descendants(run.pid)
        os.killpg(run.pid, signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert sum("corpus: interrupted" in line for line in stderr.splitlines()) == 1, stderr
    assert not (out / ".corpus.lock").exists()
    time.sleep(0.5)
    assert [pid for pid in started if os.path.exists(f"/proc/{pid}")
            and b") Z " not in Path(f"/proc/{pid}/stat").read_bytes()] == []
    # nothing half-written is kept as finished: the same command completes the build
    again = corpus(*args[1:], timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "filter" / "_SUCCESS").exists()
