"""The trainer on its own: model properties, the shard loader, and real torchrun runs."""

import hashlib
from dataclasses import asdict

import numpy as np
import pytest
import torch

from pipelines.tokens.tokenizer import train_tokenizer
from schemas.config import TrainConfig
from schemas.manifest import Counts, EngineMetrics, Manifest
from schemas.tokens import EOT_TOKEN, TokenShard, TokenShardsInfo, shard_file_names
from tests.conftest import shared
from trainer.data import TokenLoader, TokenShards
from trainer.launch import launch_training
from trainer.model import GPT, GPTConfig
from trainer.train import load_init_checkpoint, train

TINY = TrainConfig(steps=150, batch_size=8, block_size=32, n_layer=2, n_head=2, n_embd=32,
                   eval_interval=50, eval_batches=4, nproc=2, sample_tokens=20,
                   learning_rate=5e-3, warmup_steps=10)


def write_token_folder(folder, docs: list[str], vocab: int = 512):
    """A token folder as the tokenize stage writes it (written directly here, no Beam)."""
    tok = train_tokenizer(docs, vocab, 2)
    (folder / "data").mkdir(parents=True)
    (folder / "tokenizer.json").write_text(tok.to_str())
    eot = tok.token_to_id(EOT_TOKEN)
    splits = {}
    for split, part in (("train", docs[:-5]), ("val", docs[-5:])):
        ids = [np.array(tok.encode(d).ids + [eot], dtype="<u2") for d in part]
        bin_name, idx_name = shard_file_names(split, 0)
        (folder / "data" / bin_name).write_bytes(np.concatenate(ids).tobytes())
        (folder / "data" / idx_name).write_bytes(np.cumsum([len(i) for i in ids]).astype("<u8")
                                                 .tobytes())
        splits[split] = [TokenShard(f"data/{bin_name}", f"data/{idx_name}",
                                    int(sum(len(i) for i in ids)), len(ids), "-", "-")]
    digest = hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()
    info = TokenShardsInfo("uint16", tok.get_vocab_size(), eot, "tokenizer.json", digest, "-",
                           0.1, splits)
    (folder / "manifest.json").write_text(Manifest(  # what a tokenize stage writes, abridged
        stage="tokenize", fingerprint="test", counts=Counts(records_in=len(docs),
                                                            records_out=len(docs)),
        metrics=EngineMetrics(seconds=0), tokens=info.to_dict()).to_json())
    return info


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    text = shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8")[:120_000]
    docs = [text[i:i + 2000] for i in range(0, len(text), 2000)]
    folder = tmp_path_factory.mktemp("tokens")
    write_token_folder(folder, docs)
    return folder


def test_model_starts_near_uniform_and_is_causal():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32,
                          dropout=0.0)).eval()
    x = torch.randint(300, (2, 16))
    logits, loss = model(x, torch.randint(300, (2, 16)))
    assert logits.shape == (2, 16, 300)
    assert abs(loss.item() - np.log(300)) < 0.3
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 300
    logits2, _ = model(changed)
    assert torch.allclose(logits[:, :10], logits2[:, :10], atol=1e-5)
    assert not torch.allclose(logits[:, 10:], logits2[:, 10:])


def test_loader_reads_written_tokens_and_rejects_truncated_shards(tokens, tmp_path):
    data = TokenShards(str(tokens))
    raw = np.fromfile(tokens / "data" / "train-00000.bin", dtype="<u2")
    assert data.tokens("train") == len(raw)
    x, y = TokenLoader(data, "train", 4, 16, seed=0).next_batch()
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="no shard longer"):
        TokenLoader(data, "val", 1, 100_000, seed=0)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tokens, broken)
    bin_path = broken / "data" / "train-00000.bin"
    bin_path.write_bytes(bin_path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        TokenShards(str(broken))


def test_torchrun_two_processes_learn_and_fine_tune(tokens, tmp_path):
    lines = []
    result = launch_training(str(tokens), str(tmp_path / "run"), TINY, stream=lines.append)
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["final_train_loss"] < result["initial_train_loss"] - 1.0
    assert result["sample_text"].strip()
    assert any(line.startswith("step 50/150") for line in lines)
    ckpt = tmp_path / "run" / "ckpt.pt"
    tuned = launch_training(str(tokens), str(tmp_path / "tuned"),
                            TrainConfig(**{**TINY.__dict__, "steps": 10}), nproc=1,
                            init_from=str(ckpt), stream=lambda _: None)
    assert tuned["initial_train_loss"] < result["initial_train_loss"] - 1.0
    assert tuned["world_size"] == 1
    # the checkpoint knows where the loader stopped; same data, so fine-tuning reads on from there
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert saved["loader"] == {"samples_consumed": 150 * 8 * 2} == {
        "samples_consumed": result["samples_consumed"]}
    assert saved["tokenizer_sha256"] == TokenShards(str(tokens)).info.tokenizer_sha256
    assert tuned["samples_consumed"] == 150 * 8 * 2 + 10 * 8


def test_a_checkpoint_of_another_tokenizer_is_refused(tokens, tmp_path, monkeypatch):
    info = TokenShards(str(tokens)).info
    cfg = GPTConfig(vocab_size=info.vocab_size, block_size=TINY.block_size, n_layer=TINY.n_layer,
                    n_head=TINY.n_head, n_embd=TINY.n_embd, dropout=TINY.dropout)
    state = {"model": GPT(cfg).state_dict(), "model_config": asdict(cfg)}
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    # no hash: kept
    assert load_init_checkpoint(str(path), cfg, info)["model_config"] == asdict(cfg)
    torch.save({**state, "tokenizer_sha256": "ab" * 32}, path)
    with pytest.raises(ValueError, match="another tokenizer") as err:
        load_init_checkpoint(str(path), cfg, info)
    assert "ab" * 32 in str(err.value)
    assert f"dataset tokenizer_sha256 {info.tokenizer_sha256}" in str(err.value)
    monkeypatch.delenv("RANK", raising=False)  # one process, no torchrun: fails before training
    with pytest.raises(ValueError, match="token ids would mean different things"):
        train(str(tokens), str(tmp_path / "out"), TINY, init_from=str(path), log=lambda _: None)


def test_a_failed_run_raises_with_its_output(tokens, tmp_path):
    bad = TrainConfig(**{**TINY.__dict__, "n_embd": 30, "n_head": 4, "steps": 1})
    with pytest.raises(RuntimeError, match="not a multiple of n_head"):
        launch_training(str(tokens), str(tmp_path / "bad"), bad, nproc=1,
                        stream=lambda _: None)
