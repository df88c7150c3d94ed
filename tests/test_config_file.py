"""The TOML config file: every stage's settings, validated with errors that name the key, flags on
top, and `corpus config show` printing the effective config."""

import tomllib

import pytest

from flows.cli import parser
from flows.cli.common import UserError
from flows.cli.options import config_from
from schemas.config import PipelineConfig
from tests.test_cli import corpus, one_line_error


def config_of(*args):
    return config_from(parser().parse_args(["config", "show", *args]))


def test_a_file_sets_every_section_and_flags_win(tmp_path, monkeypatch):
    monkeypatch.delenv("CORPUS_SET", raising=False)  # the suite's own (tests/conftest.py)
    path = tmp_path / "corpus.toml"
    path.write_text('seed = 3\nsnapshot = "2026-w48"\n[dedup]\nthreshold = 0.7\nkeep = '
                    '"longest_text"\n[filter.quality]\nmin_chars = 80\n[tokenize]\n'
                    'vocab_size = 4096\n[train]\nsteps = 50\npreset = "gpt2"\n[engine]\n'
                    'workers = 1\n[crawl]\nseeds = ["https://example.org/"]\ndelay_s = 2\n')
    cfg = config_of("--config", str(path), "--steps", "70", "--workers", "2")
    assert (cfg.seed, cfg.snapshot, cfg.dedup.threshold, cfg.dedup.keep) == \
        (3, "2026-w48", 0.7, "longest_text")
    assert cfg.filter.quality.min_chars == 80 and cfg.tokenize.vocab_size == 4096
    assert cfg.train.steps == 70 and cfg.engine.workers == 2  # the flags win
    assert (cfg.train.n_layer, cfg.train.n_embd, cfg.train.block_size) == (12, 768, 1024)
    assert cfg.crawl.seeds == ("https://example.org/",) and cfg.crawl.delay_s == 2
    assert config_of() == PipelineConfig()


def test_the_environment_sets_under_the_file_and_the_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("CORPUS_SET", "seed=5; dedup.threshold=0.6;engine.workers=3")
    cfg = config_of()
    assert (cfg.seed, cfg.dedup.threshold, cfg.engine.workers) == (5, 0.6, 3)
    path = tmp_path / "corpus.toml"
    path.write_text("seed = 4\n")
    cfg = config_of("--config", str(path), "--workers", "1")
    assert (cfg.seed, cfg.dedup.threshold, cfg.engine.workers) == (4, 0.6, 1)
    monkeypatch.setenv("CORPUS_SET", "dedup.threshhold=0.6")
    with pytest.raises(UserError, match=r"CORPUS_SET: --set dedup\.threshhold: no such setting"):
        config_of()


def test_mistakes_name_their_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[dedup]\nthreshhold = 0.7\n")
    with pytest.raises(UserError, match=r"dedup\.threshhold.*dedup has .*threshold"):
        config_of("--config", str(bad))
    bad.write_text("[filter.quality]\nmin_chars = \"eighty\"\n")
    with pytest.raises(UserError, match=r"filter\.quality\.min_chars: expected int"):
        config_of("--config", str(bad))
    bad.write_text("[train\nsteps = 1\n")
    with pytest.raises(UserError, match="not valid TOML"):
        config_of("--config", str(bad))
    with pytest.raises(UserError, match="no such file"):
        config_of("--config", str(tmp_path / "absent.toml"))


def test_config_show_prints_toml_that_reads_back(tmp_path):
    out = corpus("config", "show", "--steps", "12")
    assert out.returncode == 0, out.stderr
    shown = PipelineConfig.from_dict(tomllib.loads(out.stdout))
    assert shown.train.steps == 12 and shown.dedup == PipelineConfig().dedup
    bad = tmp_path / "bad.toml"
    bad.write_text("[shard]\nnum_shards = -1\nwhatever = 1\n")
    one_line_error(corpus("config", "show", "--config", str(bad)), "shard.whatever")


def test_each_rule_set_has_its_section_and_the_old_keys_still_work(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[filter.quality]\ngopher_repetition = false\nc4 = false\n"
                    "c4_terminal_punct = true\nfineweb_dup_line_chars = 0.2\n")
    given = config_of("--config", str(path), "--set", "filter.quality.fineweb=false")
    quality = given.filter.quality
    assert not quality.gopher_repetition.enabled and quality.gopher_quality.enabled
    assert not quality.c4.enabled and quality.c4.terminal_punct
    assert not quality.fineweb.enabled and quality.fineweb.char_dup_ratio == 0.2
    path.write_text("[filter.quality.gopher_quality]\nmin_words = 20\nmax_words = 1000\n"
                    "[filter.quality.gopher_repetition]\ntop_ngrams = [[2, 0.25]]\n")
    quality = config_of("--config", str(path)).filter.quality
    assert (quality.gopher_quality.min_words, quality.gopher_quality.max_words) == (20, 1000)
    assert quality.gopher_repetition.top_ngrams == ((2, 0.25),)
    path.write_text("[filter.quality]\nc4_terminal_punct = true\n"
                    "[filter.quality.c4]\nterminal_punct = false\n")
    with pytest.raises(UserError, match=r"c4_terminal_punct is now filter\.quality\.c4\."
                                         r"terminal_punct"):
        config_of("--config", str(path))


def test_crawl_settings_are_checked_before_anything_runs():
    from schemas.config import CrawlConfig

    with pytest.raises(ValueError, match="allow_addresses.*10.0.0.0/99"):
        CrawlConfig(allow_addresses=("10.0.0.0/99",))
    with pytest.raises(ValueError, match="NAME=IP"):
        CrawlConfig(resolve=("a.example.com",))
    with pytest.raises(ValueError, match="crawl pattern"):
        CrawlConfig(include=("([",))
    assert CrawlConfig(include=["a"], exclude=("b",)).include == ("a",)  # lists from TOML work
