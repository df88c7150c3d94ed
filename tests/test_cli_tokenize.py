"""The tokenize options of `corpus build`: parsed into the config, contradictions as one line,
and a real build with a supplied tokenizer."""

import hashlib
import json

import pytest

from flows.cli import parser
from flows.cli.common import UserError
from flows.cli.options import config_from
from pipelines.tokens.tokenizer import train_tokenizer
from schemas.config import TokenizeConfig
from tests.conftest import shared
from tests.test_cli import corpus, one_line_error


def config_of(*args):
    return config_from(parser().parse_args(["build", "--input", "x", "--output", "y", *args]))


def test_options_reach_the_config():
    cfg = config_of("--vocab-size", "32000", "--min-frequency", "3", "--special-tokens",
                    "<|pad|>, <|sep|>", "--tokenizer-sample", "100000docs", "--val-fraction",
                    "0.05", "--shard-tokens", "5000000", "--tokenize-memory", "64MiB")
    t = cfg.tokenize
    assert (t.vocab_size, t.min_frequency, t.special_tokens) == (32000, 3, ("<|pad|>", "<|sep|>"))
    assert (t.sample_documents, t.sample_bytes) == (100_000, 0)
    assert (t.val_fraction, t.shard_tokens, t.memory_limit) == (0.05, 5_000_000, 64 * 2**20)
    assert config_of("--tokenizer-sample", "2GB").tokenize.sample_bytes == 2 * 10**9
    assert config_of().tokenize == TokenizeConfig()


def test_contradictions_are_refused():
    with pytest.raises(UserError, match="drop --vocab-size"):
        config_of("--tokenizer", "tok.json", "--vocab-size", "5000")
    with pytest.raises(SystemExit):
        config_of("--tokenizer-sample", "lots")
    with pytest.raises(SystemExit):
        config_of("--val-fraction", "1")
    with pytest.raises(UserError, match="too small"):
        config_of("--vocab-size", "100")


def test_a_build_with_a_supplied_tokenizer(tmp_path):
    warc = str(shared("warc"))
    one_line_error(corpus("build", "--input", warc, "--output", str(tmp_path / "a"),
                          "--tokenizer", str(tmp_path / "absent.json")),
                   "--tokenizer", "no such file")
    texts = shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8")[:300_000]
    path = tmp_path / "shakespeare.json"
    train_tokenizer(texts.split("\n\n"), 1000, 2).save(str(path))
    out = corpus("build", "--input", warc, "--output", str(tmp_path / "ds"), "--tokenizer",
                 str(path), "--val-fraction", "0.2", "--workers", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    tokens = tmp_path / "ds" / "tokenize"
    assert (tokens / "tokenizer.json").read_bytes() == path.read_bytes()
    info = json.loads((tokens / "manifest.json").read_text())["tokens"]
    assert info["tokenizer_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["tokenizer_source"]["kind"] == "supplied" and info["val_fraction"] == 0.2
    assert info["vocab_size"] == 1000
