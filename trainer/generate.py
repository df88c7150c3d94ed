"""Sample text from a trained model: `ckpt.pt` (or its folder) or an exported GPT-2 folder, with
the dataset's tokenizer found beside it.

    model, tokenizer = load("out/train")  # ckpt.pt and the tokenizer.json beside it
    print(generate_text(model, tokenizer, "To be", max_new_tokens=50, seed=1))

Sampling is a function of the seed: the only randomness is a `torch.Generator` seeded with it
(and the model runs in eval mode, so dropout is off). The prompt is encoded as the tokenizer
encodes any text; an empty prompt starts from the end-of-document token, i.e. at the start of a
new document. The answer is the prompt and its continuation, decoded together (byte-level tokens
may join across the boundary), special tokens left out, ending on a whole character
(`trainer.hf.decode_text`: no replacement character where generation stopped inside one).
"""

from __future__ import annotations

import torch

from trainer.hf import (
    build_model,
    checkpoint_file,
    decode_text,
    end_of_document_token,
    load_tokenizer_file,
    read_checkpoint,
    tokenizer_beside,
)
from trainer.model import GPT


def resolve_device(name: str) -> str:
    """`auto` -> `cuda` when a GPU is there, else `cpu`; other names as they are (the trainer's
    rule too: it imports this)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_model(checkpoint: str, device: str = "cpu") -> GPT:
    """The model of a checkpoint (`ckpt.pt`, a training output folder, or a folder written by
    `trainer.hf.export_hf`), in eval mode on `device` (`auto`: CUDA when there is one)."""
    ckpt = read_checkpoint(checkpoint)
    return build_model(ckpt["model_config"], ckpt["model"]).to(resolve_device(device))


def load(checkpoint: str, tokenizer: str | None = None, device: str = "cpu"):
    """(model, tokenizer) of a checkpoint. The tokenizer is `tokenizer` when given, else the
    `tokenizer.json` beside the checkpoint; one other than the model was trained with (its
    sha256 differs from the checkpoint's `tokenizer_sha256`) is refused."""
    ckpt = read_checkpoint(checkpoint)
    path = tokenizer or tokenizer_beside(checkpoint_file(checkpoint))
    tok = load_tokenizer_file(path, ckpt.get("tokenizer_sha256"))
    model = build_model(ckpt["model_config"], ckpt["model"])
    return model.to(resolve_device(device)), tok


@torch.no_grad()
def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int = 100,
                  temperature: float = 0.8, top_k: int | None = 50, seed: int = 0,
                  device: str | None = None) -> str:
    """The prompt and `max_new_tokens` sampled tokens after it, as text. `temperature` 0 is
    greedy; `top_k` None or 0 samples from the whole vocabulary. `device` defaults to the
    model's."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be 0 or more, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be 0 or more, got {temperature}")
    device = resolve_device(device) if device else str(next(model.parameters()).device)
    model = model.to(device).eval()
    ids = tokenizer.encode(prompt).ids if prompt else []
    if not ids:
        ids = [tokenizer.token_to_id(end_of_document_token(tokenizer))]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k or None,
                         generator=generator)
    return decode_text(tokenizer, out[0].tolist(), keep=len(ids))
