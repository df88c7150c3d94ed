"""The `corpus` command as a user runs it: help texts and one-line errors, no tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared

CORPUS = str(Path(sys.executable).with_name("corpus"))


def corpus(*args, cwd=None):
    return subprocess.run([CORPUS, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ})


def subcommands():
    from flows.cli import parser

    action = next(a for a in parser()._actions if a.dest == "command")
    return action.choices  # name -> its parser


DOCUMENTS = ("read", "extract", "filter", "filter.langid", "filter.quality",
             "filter.quality_model", "filter.pii", "dedup", "shard", "tokenize")
# What each subcommand must offer beyond its settings, and the sections of settings it shows.
OWN = {
    "demo": ({"--output", "--port", "--no-train", "--seed"}, ("engine", "train")),
    "build": ({"--input", "--output", "--until", "--train", "--crawl", "--seeds"},
              ("", *DOCUMENTS, "crawl", "engine", "train", "ablate.proxy")),
    "crawl": ({"--output", "--seeds", "--seeds-file"}, ("", "crawl", "engine")),
    "train": ({"--dataset", "--out", "--init-from", "--resume", "--nnodes"}, ("train",)),
    "generate": ({"--checkpoint", "--prompt", "--temperature", "--top-k", "--tokenizer"}, ()),
    "export": ({"--checkpoint", "--out", "--tokenizer"}, ()),
    # --block-size and --batch-size are its own (a window, a forward pass), not train's settings
    "evaluate": ({"--checkpoint", "--tokenizer", "--text", "--tasks", "--json", "--device",
                  "--block-size", "--stride", "--batch-size"}, ()),
    "quality-model": (set(), ()),  # a group: its `train` takes --positive, --negative, ...
    "refresh": ({"--output", "--snapshot", "--train", "--seeds"}, ("crawl", *DOCUMENTS,
                                                                   "engine", "train",
                                                                   "ablate.proxy")),
    "serve": ({"--output", "--cron", "--every", "--timezone", "--no-train", "--seeds"},
              ("crawl", *DOCUMENTS, "engine", "train", "ablate.proxy")),
    "ablate": ({"--input", "--output", "--arm", "--set", "--config", "--eval", "--mc",
                "--overwrite"}, ("", *DOCUMENTS, "engine", "train", "ablate")),
    "why": ({"--dataset", "--json"}, ()),
    "verify": ({"--json"}, ()),
    "config": ({"--config", "--set"}, ("", "crawl", *DOCUMENTS, "engine", "train", "ablate",
                                       "ablate.proxy")),
}


def section_flags(section: str) -> set[str]:
    from flows.cli.options import settings_of

    return {(info.json_schema_extra or {}).get("flag") for _, info in settings_of(section)} - {None}


def test_every_subcommand_is_covered():
    assert set(subcommands()) == set(OWN)


@pytest.mark.parametrize("sub", sorted(OWN))
def test_each_subcommand_lists_its_own_options_and_no_others(sub):
    """A subcommand's --help names what it takes, and only that: the settings of the config
    sections it uses, none of the others' (`corpus train --help` has no --runner)."""
    own, sections = OWN[sub]
    text = subcommands()[sub].format_help()
    listed = {word.strip("[],") for word in text.split() if word.startswith(("--", "[--"))}
    assert own <= listed, own - listed
    every = {flag for s in ("", "crawl", *DOCUMENTS, "engine", "train", "ablate",
                            "ablate.proxy") for flag in section_flags(s)}
    wanted = {flag for s in sections for flag in section_flags(s)}
    assert wanted <= listed, wanted - listed
    assert not (every - wanted - own) & listed, (every - wanted - own) & listed


def test_help_answers_from_the_command_line():
    for sub in ("train", "crawl"):
        out = corpus(sub, "--help")
        assert out.returncode == 0 and "--config" in out.stdout
    assert "--runner" not in corpus("train", "--help").stdout
    assert "--steps" not in corpus("crawl", "--help").stdout


def one_line_error(out, *needles):
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corpus: error:"), out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_input(tmp_path):
    one_line_error(corpus("build", "--input", str(tmp_path / "nope.warc.gz"), "--output",
                          str(tmp_path / "out")), "no such file", "nope.warc.gz")


def test_corrupt_or_non_warc_input(tmp_path):
    fake = tmp_path / "fake.warc.gz"
    fake.write_bytes(b"\x1f\x8b\x08\x00 this is not really gzip")
    one_line_error(corpus("build", "--input", str(fake), "--output", str(tmp_path / "out")),
                   "broken gzip", "fake.warc.gz")
    text = shared("text", "tinyshakespeare.txt")
    one_line_error(corpus("build", "--input", str(text), "--output", str(tmp_path / "out2")),
                   "tinyshakespeare.txt")


def test_output_holding_another_dataset(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset.json").write_text('{"source": "somebody else\'s crawl"}')
    warc = shared("warc", "dolma-sample-0000.warc.gz")
    one_line_error(corpus("build", "--input", str(warc), "--output", str(out)),
                   "holds another dataset", "--overwrite")
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    one_line_error(corpus("build", "--input", str(warc), "--output", str(stray)), "not empty")


def test_train_on_something_that_is_not_a_dataset(tmp_path):
    one_line_error(corpus("train", "--dataset", str(tmp_path / "absent")), "not found")
    one_line_error(corpus("train", "--dataset", str(tmp_path)), "no finished token shards")


def test_version_and_verbosity_flags():
    out = corpus("--version")
    assert out.returncode == 0
    name, number, code = out.stdout.split(maxsplit=2)
    assert name == "corpus" and number[0].isdigit() and code.startswith("(code ")
    one_line_error(corpus("build", "-q", "-v", "--input", "x", "--output", "y"),
                   "not allowed with")
