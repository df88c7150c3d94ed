"""`trainer.generate` and `corpus generate`: text from a checkpoint, a function of the seed.

The checkpoint is real and small: a byte-level BPE trained on Shakespeare, a tiny GPT trained for
a few dozen steps in this process on the same text, saved as `trainer.train` saves `ckpt.pt`,
with `tokenizer.json` beside it."""

import hashlib
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from pipelines.tokens.tokenizer import train_tokenizer
from schemas.tokens import EOT_TOKEN
from tests.conftest import shared
from trainer.generate import generate_text, load, load_model
from trainer.hf import CheckpointError, decode_text, read_checkpoint
from trainer.model import GPT, GPTConfig

CORPUS = str(Path(sys.executable).with_name("corpus"))
PROMPT = "ROMEO:"


def shakespeare(chars: int = 60_000) -> str:
    return shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8")[:chars]


def write_checkpoint(folder: Path, steps: int = 30, bias: bool = True, vocab: int = 512,
                     seed: int = 0) -> Path:
    """`folder/ckpt.pt` and `folder/tokenizer.json` in the format `trainer.train` writes; the
    model has had `steps` AdamW steps on Shakespeare (biases and norms move off their init)."""
    text = shakespeare()
    tokenizer = train_tokenizer([text[i:i + 2000] for i in range(0, len(text), 2000)], vocab, 2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=tokenizer.get_vocab_size(), block_size=32, n_layer=2, n_head=2,
                    n_embd=32, dropout=0.1, bias=bias)
    model = GPT(cfg)
    optimizer = model.configure_optimizer(0.1, 3e-3)
    ids = torch.tensor(tokenizer.encode(text).ids)
    for _ in range(steps):
        starts = torch.randint(len(ids) - cfg.block_size - 1, (16,))
        x = torch.stack([ids[s:s + cfg.block_size] for s in starts])
        y = torch.stack([ids[s + 1:s + cfg.block_size + 1] for s in starts])
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sha = hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()
    torch.save({"model": model.state_dict(), "model_config": asdict(cfg),
                "train_config": {"steps": steps, "seed": seed}, "step": steps,
                "optimizer": optimizer.state_dict(), "loader": {"samples_consumed": steps * 16},
                "tokenizer_sha256": sha, "dataset_manifest_sha256": "-"}, folder / "ckpt.pt")
    return folder / "ckpt.pt"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("run"))


def corpus(*args):
    return subprocess.run([CORPUS, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def one_line_error(out, *needles):
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("corpus: error:"), out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_same_seed_same_text_other_seed_other_text(checkpoint):
    model, tokenizer = load(str(checkpoint))
    assert not model.training  # dropout off: the seed is the only randomness
    first = generate_text(model, tokenizer, PROMPT, max_new_tokens=40, temperature=1.0, seed=1)
    model2, tokenizer2 = load(str(checkpoint.parent))  # the folder works as well as the file
    again = generate_text(model2, tokenizer2, PROMPT, max_new_tokens=40, temperature=1.0, seed=1)
    other = generate_text(model, tokenizer, PROMPT, max_new_tokens=40, temperature=1.0, seed=2)
    assert first == again
    assert first != other
    assert first.startswith(PROMPT) and len(first) > len(PROMPT) + 20
    new_ids = tokenizer.encode(first).ids
    assert len(new_ids) >= 30  # about 40 tokens came back as text


def test_empty_prompt_starts_a_new_document(checkpoint):
    model, tokenizer = load(str(checkpoint))
    eot = tokenizer.token_to_id(EOT_TOKEN)
    text = generate_text(model, tokenizer, "", max_new_tokens=25, seed=5)
    start = torch.tensor([[eot]])
    expected = model.generate(start, 25, temperature=0.8, top_k=50,
                              generator=torch.Generator().manual_seed(5))
    assert expected[0, 0].item() == eot
    assert text == tokenizer.decode(expected[0].tolist(), skip_special_tokens=True)
    assert EOT_TOKEN not in text and text.strip()


def test_temperature_zero_is_greedy_whatever_the_seed(checkpoint):
    model, tokenizer = load(str(checkpoint))
    texts = {generate_text(model, tokenizer, PROMPT, max_new_tokens=20, temperature=0, seed=s)
             for s in range(3)}
    assert len(texts) == 1
    ids = torch.tensor([tokenizer.encode(PROMPT).ids])
    with torch.no_grad():
        for _ in range(20):
            logits, _ = model(ids[:, -model.config.block_size:])
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert texts.pop() == tokenizer.decode(ids[0].tolist(), skip_special_tokens=True)


def test_another_tokenizer_is_refused(checkpoint, tmp_path):
    other = train_tokenizer([shakespeare(20_000)], 300, 2)
    path = tmp_path / "other.json"
    path.write_text(other.to_str(), encoding="utf-8")
    with pytest.raises(CheckpointError, match="not the tokenizer the model was trained with"):
        load(str(checkpoint), tokenizer=str(path))


def test_a_damaged_checkpoint_is_one_clear_error(checkpoint, tmp_path):
    broken = tmp_path / "ckpt.pt"
    broken.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(str(broken))
    ckpt = read_checkpoint(str(checkpoint))
    del ckpt["model"]["blocks.1.mlp.fc.bias"]
    torch.save(ckpt, broken)
    with pytest.raises(CheckpointError, match="missing.*blocks.1.mlp.fc.bias"):
        load_model(str(broken))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds neither ckpt.pt nor an exported model"):
        load_model(str(tmp_path / "empty"))


def test_a_checkpoint_without_its_tokenizer_takes_one_named(checkpoint, tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(checkpoint.read_bytes())
    with pytest.raises(FileNotFoundError, match="no tokenizer.json beside"):
        load(str(tmp_path))
    model, tokenizer = load(str(tmp_path), tokenizer=str(checkpoint.parent / "tokenizer.json"))
    assert generate_text(model, tokenizer, PROMPT, max_new_tokens=5).startswith(PROMPT)


def test_cli_generate_prints_the_same_text_as_the_library(checkpoint):
    out = corpus("generate", "--checkpoint", str(checkpoint), "--prompt", PROMPT,
                 "--max-new-tokens", "30", "--seed", "3", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    model, tokenizer = load(str(checkpoint))
    expected = generate_text(model, tokenizer, PROMPT, max_new_tokens=30, seed=3)
    assert out.stdout == expected + "\n"


def test_cli_generate_errors_are_one_line(checkpoint, tmp_path):
    one_line_error(corpus("generate", "--checkpoint", str(tmp_path / "absent.pt")),
                   "checkpoint not found", "absent.pt")
    (tmp_path / "ckpt.pt").write_bytes(checkpoint.read_bytes())
    one_line_error(corpus("generate", "--checkpoint", str(tmp_path / "ckpt.pt")),
                   "no tokenizer.json beside", "--tokenizer")
    one_line_error(corpus("generate", "--checkpoint", str(checkpoint), "--temperature", "-1"),
                   "--temperature")


def test_text_ends_on_a_whole_character_where_generation_stopped_inside_one():
    """Byte-level BPE without merges: every UTF-8 byte is a token, so 'é' (2 bytes) and '中'
    (3 bytes) span several tokens; ids cut inside them decode to whole characters only."""
    tokenizer = train_tokenizer(["plain ascii text"], 256 + 1, 2)  # the byte alphabet, no merges
    text = "café 中文"
    ids = tokenizer.encode(text).ids
    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids[:-1]).endswith("\ufffd")  # what generation used to show
    for end in range(1, len(ids) + 1):
        decoded = decode_text(tokenizer, ids[:end])
        assert "\ufffd" not in decoded and text.startswith(decoded)
        assert len(decoded.encode("utf-8")) >= end - 3  # at most the cut character dropped
    assert decode_text(tokenizer, ids[:-1]) == "café 中"
    # the prompt's tokens are never dropped, and a replacement character really there stays
    assert decode_text(tokenizer, ids[:4], keep=4) == tokenizer.decode(ids[:4])
    genuine = tokenizer.encode("ok \ufffd").ids
    assert decode_text(tokenizer, genuine) == "ok \ufffd"
