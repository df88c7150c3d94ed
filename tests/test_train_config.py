"""Training settings as the CLI builds them: presets, a global batch in tokens, several nodes."""

import pytest

from flows.cli import parser
from flows.cli.common import UserError
from flows.cli.options import config_from
from schemas.config import MODEL_PRESETS, TrainConfig
from trainer.launch import rendezvous_args


def train_config(*args) -> TrainConfig:
    return config_from(parser().parse_args(["train", "--dataset", "d", *args])).train


def test_presets_give_their_shape_and_options_still_apply():
    gpt2 = train_config("--preset", "gpt2", "--block-size", "256", "--parallel", "fsdp")
    assert (gpt2.n_layer, gpt2.n_head, gpt2.n_embd) == (12, 12, 768)
    assert gpt2.block_size == 256 and gpt2.parallel == "fsdp" and gpt2.preset == "gpt2"
    large = TrainConfig.from_preset("gpt2-large")
    assert (large.n_layer, large.n_embd, large.block_size) == (36, 1280, 1024)
    assert train_config() == TrainConfig()
    assert set(MODEL_PRESETS) == {"tiny", "gpt2", "gpt2-medium", "gpt2-large"}


def test_a_preset_is_a_whole_recipe_and_each_of_its_fields_can_be_set():
    gpt2 = train_config("--preset", "gpt2")
    assert (gpt2.learning_rate, gpt2.min_learning_rate, gpt2.warmup_steps) == (6e-4, 6e-5, 715)
    assert (gpt2.dropout, gpt2.weight_decay, gpt2.global_batch_tokens) == (0.0, 0.1, 2 ** 19)
    assert gpt2.micro_steps(1) == 2 ** 19 // (gpt2.batch_size * 1024) == 32
    assert gpt2.steps * gpt2.global_batch_tokens >= 20 * 124e6  # Chinchilla's tokens
    for name in ("gpt2-medium", "gpt2-large"):  # larger: a lower peak, the same batch
        bigger = TrainConfig.from_preset(name)
        assert bigger.learning_rate < gpt2.learning_rate
        assert bigger.min_learning_rate == pytest.approx(bigger.learning_rate / 10)
        assert all(bigger.micro_steps(world) for world in (1, 2, 4, 8))
    # a flag, --set and a TOML file each win over the preset's value
    assert train_config("--preset", "gpt2", "--steps", "50").steps == 50
    mine = train_config("--preset", "gpt2", "--set", "train.learning_rate=1e-4",
                        "--set", "train.dropout=0.2")
    assert (mine.learning_rate, mine.dropout, mine.warmup_steps) == (1e-4, 0.2, 715)
    # tiny is the defaults: the recipe the demo and the CPU tests train with
    assert TrainConfig.from_preset("tiny") == TrainConfig(preset="tiny")


def test_a_global_batch_in_tokens_sets_the_micro_steps():
    cfg = train_config("--batch-size", "4", "--block-size", "32", "--nproc", "2",
                       "--global-batch-tokens", "1024")
    assert cfg.micro_steps(2) == 4 and cfg.micro_steps(4) == 2
    with pytest.raises(UserError, match="not a multiple"):
        train_config("--batch-size", "4", "--block-size", "32", "--global-batch-tokens", "1000")
    with pytest.raises(SystemExit):
        train_config("--preset", "gpt5")


def test_several_nodes_meet_at_a_rendezvous():
    assert rendezvous_args() == ["--standalone", "--nnodes=1"]
    args = rendezvous_args(2, 1, "10.0.0.1:29500", "run7")
    assert args == ["--nnodes=2", "--node-rank=1", "--rdzv-backend=c10d",
                    "--rdzv-endpoint=10.0.0.1:29500", "--rdzv-id=run7"]
    with pytest.raises(ValueError, match="endpoint"):
        rendezvous_args(2, 0, None)


def test_the_trainer_entry_point_reads_every_field_from_its_flags():
    """`python -m trainer.train` (what torchrun starts) has one flag per TrainConfig field, read
    as text and converted by the model's validation; a bad value is the model's error."""
    from trainer.train import config_from_args, parse_args

    base = ["--tokens", "t", "--out", "o"]
    cfg = config_from_args(parse_args(base + ["--steps", "7", "--dropout", "0.25",
                                              "--compile", "off", "--sample-prompt", "Hi"]))
    assert (cfg.steps, cfg.dropout, cfg.compile, cfg.sample_prompt) == (7, 0.25, "off", "Hi")
    assert config_from_args(parse_args(base)) == TrainConfig()
    with pytest.raises(ValueError, match="steps"):
        config_from_args(parse_args(base + ["--steps", "seven"]))
