"""Our two checkpoint forms, and the mapping between them.

- `ckpt.pt`, written by `trainer.train`: a `torch.save` dict with the plain GPT's state dict
  (`model`), `model_config` (the `GPTConfig` fields), `tokenizer_sha256` and training state; the
  dataset's `tokenizer.json` lies beside it.
- A Hugging Face GPT-2 folder, written by `export_hf`: `config.json`, `model.safetensors`,
  `generation_config.json`, and the same `tokenizer.json` (byte for byte, so its sha256 is the
  dataset's `tokenizer_sha256`) with the `tokenizer_config.json` and `special_tokens_map.json`
  that `transformers.AutoTokenizer` reads. `transformers.GPT2LMHeadModel.from_pretrained(dir)`
  loads it and computes the same logits as our `GPT`.

Our GPT *is* GPT-2's architecture (pre-LayerNorm blocks, learned positions, tied head, fused
q/k/v, 4x MLP) with one difference of taste: the exact GELU, which GPT-2 configs call `"gelu"`
(OpenAI's GPT-2 used the tanh approximation, `"gelu_new"`). GPT-2's `Conv1D` stores linear weights
as (in, out), so those are transposed. A model without biases (`bias=False`) is exported with zero
biases, which computes the same function; `import_hf` always answers `bias=True`. `import_hf`
refuses a GPT-2 folder our model cannot reproduce exactly (another activation, an untied head,
another MLP width, cross-attention...), rather than load something that computes other logits.

Plain `safetensors` and JSON: nothing here imports `transformers` (a test-only extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import uuid
from dataclasses import asdict

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from schemas.tokens import EOT_TOKEN
from trainer.model import GPT, GPTConfig

CHECKPOINT_FILE = "ckpt.pt"
TOKENIZER_FILE = "tokenizer.json"
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which our model uses

# our block's parameter -> GPT-2's, and whether the weight is a Linear GPT-2 keeps as Conv1D
BLOCK_NAMES = {"ln1": ("ln_1", False), "attn.qkv": ("attn.c_attn", True),
               "attn.proj": ("attn.c_proj", True), "ln2": ("ln_2", False),
               "mlp.fc": ("mlp.c_fc", True), "mlp.proj": ("mlp.c_proj", True)}
TOP_NAMES = {"tok_emb": "wte", "pos_emb": "wpe", "ln_f": "ln_f"}
IGNORED_HF_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of old exports


class CheckpointError(ValueError):
    """A checkpoint, exported folder or tokenizer that cannot be used; the message says why."""


class MissingTokenizer(FileNotFoundError):
    """No tokenizer.json beside a checkpoint, and none named."""


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_hf_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, HF_CONFIG)) and \
        os.path.isfile(os.path.join(path, HF_WEIGHTS))


def checkpoint_file(path: str) -> str:
    """`path` as a checkpoint: a `ckpt.pt` file, a training output folder holding one, or an
    exported GPT-2 folder (returned as the folder)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        if is_hf_dir(path):
            return path
        if os.path.isfile(os.path.join(path, CHECKPOINT_FILE)):
            return os.path.join(path, CHECKPOINT_FILE)
        raise CheckpointError(f"{path} holds neither {CHECKPOINT_FILE} nor an exported model "
                              f"({HF_CONFIG} + {HF_WEIGHTS})")
    return path


def tokenizer_beside(path: str) -> str:
    """The `tokenizer.json` that belongs to a checkpoint: in its folder."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    found = os.path.join(folder, TOKENIZER_FILE)
    if not os.path.isfile(found):
        raise MissingTokenizer(f"no {TOKENIZER_FILE} beside {path}: name the dataset's "
                               f"tokenizer (DATASET/tokenize/{TOKENIZER_FILE})")
    return found


def end_of_document_token(tokenizer) -> str:
    """The token that ends every document: `<|endoftext|>` when the tokenizer has it as a special
    token, else its first special token (the tokenize stage trains the end-of-document token as
    the first one)."""
    specials = sorted((i, t.content) for i, t in tokenizer.get_added_tokens_decoder().items()
                      if t.special)
    if any(content == EOT_TOKEN for _, content in specials):
        return EOT_TOKEN
    if not specials:
        raise CheckpointError("the tokenizer has no special token to end a document with")
    return specials[0][1]


def _plain_state(state: dict) -> dict:
    """A state dict without the wrappers' prefixes (DDP's `module.`, torch.compile's
    `_orig_mod.`)."""
    out = {}
    for name, tensor in state.items():
        for prefix in ("module.", "_orig_mod."):
            name = name.removeprefix(prefix)
        out[name] = tensor
    return out


def _expected_state(cfg: GPTConfig) -> dict:
    """Names and shapes of the state dict of a GPT of this config, without allocating it."""
    with torch.device("meta"):
        return {name: t.shape for name, t in GPT(cfg).state_dict().items()}


def read_checkpoint(path: str) -> dict:
    """A checkpoint in `ckpt.pt` form (at least `model`, `model_config`, `tokenizer_sha256`) from
    either form; `path` as `checkpoint_file` takes it. Keys and shapes are checked against the
    config, so a damaged or foreign file is one clear error, not a failed `load_state_dict`."""
    path = checkpoint_file(path)
    if os.path.isdir(path):
        config, state = import_hf(path)
        return {"model": state, "model_config": config,
                "tokenizer_sha256": _hf_metadata(path).get("tokenizer_sha256")}
    try:  # weights_only: a checkpoint is data; loading one never runs code from it
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"cannot read {path} as a checkpoint: {first}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this trainer (no model and "
                              f"model_config)")
    try:
        cfg = GPTConfig(**ckpt["model_config"])
    except TypeError as err:
        raise CheckpointError(f"{path}: model_config {ckpt['model_config']} is not a "
                              f"GPTConfig ({err})") from None
    state = _plain_state(ckpt["model"])
    _check_state(state, cfg, path)
    return {**ckpt, "model": state, "model_config": asdict(cfg)}


def _check_state(state: dict, cfg: GPTConfig, path: str) -> None:
    try:
        expected = _expected_state(cfg)
    except ValueError as err:  # a shape GPT refuses, e.g. n_embd not a multiple of n_head
        raise CheckpointError(f"{path}: {err}") from None
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not fit the model config: missing "
                              f"{missing[:4] or 'none'}, unexpected {unexpected[:4] or 'none'}")
    for name, shape in expected.items():
        if tuple(state[name].shape) != tuple(shape):
            raise CheckpointError(f"{path}: {name} has shape {tuple(state[name].shape)}, the "
                                  f"config says {tuple(shape)}")


def build_model(config: dict, state: dict) -> GPT:
    """A GPT in eval mode holding these weights (on the CPU)."""
    model = GPT(GPTConfig(**config))
    model.load_state_dict(state)
    return model.eval()


# --- ours -> GPT-2 ---------------------------------------------------------------------------

def gpt2_config(cfg: GPTConfig, eot_id: int, dtype: torch.dtype) -> dict:
    """`config.json` of a `GPT2LMHeadModel` that computes what `GPT(cfg)` computes."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "activation_function": "gelu",  # exact GELU, as F.gelu (not GPT-2's tanh "gelu_new")
        "layer_norm_epsilon": LAYER_NORM_EPS, "initializer_range": 0.02,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "add_cross_attention": False,
        "tie_word_embeddings": True, "use_cache": True,
        "bos_token_id": eot_id, "eos_token_id": eot_id,
        "dtype": str(dtype).removeprefix("torch."),
    }


def to_gpt2_state(state: dict, cfg: GPTConfig) -> dict:
    """Our state dict -> GPT-2's tensor names (`transformer.*`, as `save_pretrained` writes
    them), linear weights transposed, absent biases as zeros; the tied head is left out."""
    out = {}
    for ours, theirs in TOP_NAMES.items():
        out[f"transformer.{theirs}.weight"] = state[f"{ours}.weight"]
    out["transformer.ln_f.bias"] = state.get("ln_f.bias")
    for i in range(cfg.n_layer):
        for ours, (theirs, conv) in BLOCK_NAMES.items():
            weight = state[f"blocks.{i}.{ours}.weight"]
            out[f"transformer.h.{i}.{theirs}.weight"] = weight.t() if conv else weight
            out[f"transformer.h.{i}.{theirs}.bias"] = state.get(f"blocks.{i}.{ours}.bias")
    for name, tensor in out.items():
        if tensor is None:  # bias=False: a zero bias computes the same function
            weight = out[name.removesuffix(".bias") + ".weight"]
            width = weight.shape[-1] if weight.dim() == 2 else weight.shape[0]
            out[name] = torch.zeros(width, dtype=weight.dtype)
    return {name: t.detach().to("cpu").contiguous() for name, t in out.items()}


def _tokenizer_files(eot: str, block_size: int) -> dict[str, dict]:
    """What `AutoTokenizer` reads beside `tokenizer.json`: the class that loads that file as it
    is, and the end-of-document token as GPT-2's bos/eos/unk token."""
    special = {"bos_token": eot, "eos_token": eot, "unk_token": eot}
    return {
        "tokenizer_config.json": {"tokenizer_class": "PreTrainedTokenizerFast", **special,
                                  "model_max_length": block_size,
                                  "clean_up_tokenization_spaces": False},
        "special_tokens_map.json": special,
    }


def export_hf(checkpoint_path: str, out_dir: str, tokenizer_path: str | None = None) -> list[str]:
    """Write `checkpoint_path` (a `ckpt.pt`, or a folder holding one) as a Hugging Face GPT-2
    folder at `out_dir`, with its tokenizer (`tokenizer_path`, default the `tokenizer.json` beside
    the checkpoint). `out_dir` must be absent or empty; the files are written in a temporary
    folder beside it and moved there whole, so an interrupted export leaves no half model.
    Returns the paths written."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f"{out_dir} is not empty; export into a new or empty folder")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} is a file; export into a new or empty folder")
    ckpt = read_checkpoint(checkpoint_path)
    source = checkpoint_file(checkpoint_path)
    tokenizer_path = tokenizer_path or tokenizer_beside(source)
    tokenizer = load_tokenizer_file(tokenizer_path, ckpt.get("tokenizer_sha256"))
    cfg = GPTConfig(**ckpt["model_config"])
    if tokenizer.get_vocab_size() > cfg.vocab_size:
        raise CheckpointError(f"{tokenizer_path} has {tokenizer.get_vocab_size()} tokens, the "
                              f"model only {cfg.vocab_size}: not the model's tokenizer")
    eot = end_of_document_token(tokenizer)
    eot_id = tokenizer.token_to_id(eot)
    tensors = to_gpt2_state(ckpt["model"], cfg)
    dtype = tensors["transformer.wte.weight"].dtype
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)  # (not mkdtemp: its 0700 would become the export's mode)
    try:
        documents = {HF_CONFIG: gpt2_config(cfg, eot_id, dtype),
                     "generation_config.json": {"bos_token_id": eot_id, "eos_token_id": eot_id},
                     **_tokenizer_files(eot, cfg.block_size)}
        for name, document in documents.items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2)
                f.write("\n")
        shutil.copyfile(tokenizer_path, os.path.join(tmp, TOKENIZER_FILE))
        metadata = {"format": "pt", "source": "corpus-builder ckpt.pt",
                    "tokenizer_sha256": file_sha256(tokenizer_path)}
        save_file(tensors, os.path.join(tmp, HF_WEIGHTS), metadata=metadata)
        # safetensors creates its file 0600; give it the mode of the others (the umask's)
        shutil.copymode(os.path.join(tmp, HF_CONFIG), os.path.join(tmp, HF_WEIGHTS))
        names = sorted(os.listdir(tmp))
        if os.path.isdir(out_dir):
            os.rmdir(out_dir)  # empty (checked above)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [os.path.join(out_dir, name) for name in names]


# --- GPT-2 -> ours ---------------------------------------------------------------------------

def _hf_metadata(hf_dir: str) -> dict:
    with safe_open(os.path.join(hf_dir, HF_WEIGHTS), framework="pt") as f:
        return f.metadata() or {}


def config_from_gpt2(hf: dict, where: str) -> GPTConfig:
    """The `GPTConfig` of a GPT-2 `config.json`; refuses what our model would compute otherwise."""
    def refuse(what):
        raise CheckpointError(f"{where}: {what}; this trainer's GPT cannot reproduce that model")

    if hf.get("model_type") != "gpt2":
        refuse(f"model_type is {hf.get('model_type')!r}, not 'gpt2'")
    n_embd = hf.get("n_embd", 768)
    checks = [
        ("activation_function", hf.get("activation_function", "gelu_new"), "gelu",
         "our MLP uses the exact GELU"),
        ("n_inner", hf.get("n_inner") or 4 * n_embd, 4 * n_embd, "our MLP is 4 x n_embd wide"),
        ("scale_attn_weights", hf.get("scale_attn_weights", True), True, ""),
        ("scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx", False),
         False, ""),
        ("add_cross_attention", hf.get("add_cross_attention", False), False, ""),
        ("tie_word_embeddings", hf.get("tie_word_embeddings", True), True,
         "our head is the token embedding"),
    ]
    for name, value, wanted, why in checks:
        if value != wanted:
            refuse(f"{name} is {value!r}, not {wanted!r}" + (f" ({why})" if why else ""))
    eps = hf.get("layer_norm_epsilon", LAYER_NORM_EPS)
    if abs(eps - LAYER_NORM_EPS) > 1e-12:
        refuse(f"layer_norm_epsilon is {eps}, not {LAYER_NORM_EPS}")
    try:
        return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"],
                         n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=n_embd,
                         dropout=float(hf.get("resid_pdrop", 0.1)), bias=True)
    except KeyError as err:
        raise CheckpointError(f"{where}: config.json has no {err.args[0]}") from None


def import_hf(hf_dir: str) -> tuple[dict, dict]:
    """A GPT-2 folder (as `export_hf` writes it) -> (`GPTConfig` fields, our state dict), ready
    for `GPT(GPTConfig(**config)).load_state_dict(state)`, e.g. to fine-tune from it."""
    config_path, weights_path = (os.path.join(hf_dir, n) for n in (HF_CONFIG, HF_WEIGHTS))
    for needed in (config_path, weights_path):
        if not os.path.isfile(needed):
            raise CheckpointError(f"{hf_dir} is not an exported model: {needed} is missing "
                                  f"(only single-file safetensors exports are read)")
    try:
        with open(config_path, encoding="utf-8") as f:
            hf = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {config_path}: {err}") from None
    cfg = config_from_gpt2(hf, config_path)
    try:
        with safe_open(weights_path, framework="pt") as f:
            tensors = {name.removeprefix("transformer."): f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"cannot read {weights_path}: {err}") from None
    for name in [n for n in tensors if n.endswith(IGNORED_HF_SUFFIXES)]:
        del tensors[name]
    head = tensors.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, tensors.get("wte.weight", head)):
        raise CheckpointError(f"{weights_path}: lm_head.weight differs from wte.weight; our "
                              f"head is tied to the token embedding")
    state, used = {}, set()

    def take(theirs):
        if theirs not in tensors:
            raise CheckpointError(f"{weights_path} has no tensor {theirs}")
        used.add(theirs)
        return tensors[theirs]

    for ours, theirs in TOP_NAMES.items():
        state[f"{ours}.weight"] = take(f"{theirs}.weight")
    state["ln_f.bias"] = take("ln_f.bias")
    for i in range(cfg.n_layer):
        for ours, (theirs, conv) in BLOCK_NAMES.items():
            weight = take(f"h.{i}.{theirs}.weight")
            state[f"blocks.{i}.{ours}.weight"] = weight.t().contiguous() if conv else weight
            state[f"blocks.{i}.{ours}.bias"] = take(f"h.{i}.{theirs}.bias")
    left = sorted(set(tensors) - used)
    if left:
        raise CheckpointError(f"{weights_path} holds tensors this model has no place for: "
                              f"{left[:4]}")
    state["head.weight"] = state["tok_emb.weight"]  # tied, as in GPT.state_dict()
    _check_state(state, cfg, weights_path)
    return asdict(cfg), state


def load_tokenizer_file(path: str, expected_sha256: str | None = None):
    """A `tokenizers.Tokenizer` from `path`; refuses one whose sha256 differs from the one the
    model was trained with (its ids would mean other text)."""
    from tokenizers import Tokenizer

    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer not found: {path}")
    if expected_sha256 and file_sha256(path) != expected_sha256:
        raise CheckpointError(f"{path} is not the tokenizer the model was trained with "
                              f"(sha256 {file_sha256(path)[:12]}..., the checkpoint's "
                              f"{expected_sha256[:12]}...): token ids would mean other text")
    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # tokenizers raises a bare Exception for a file it cannot parse
        raise CheckpointError(f"cannot read {path} as a tokenizer.json: {err}") from None


def _byte_of_char() -> dict[str, int]:
    """The byte-level alphabet (GPT-2's, which `tokenizers`' ByteLevel uses): printable bytes
    stand for themselves, the other 68 for the characters from U+0100 on, in byte order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    others = [b for b in range(256) if b not in kept]
    return {**{chr(b): b for b in kept}, **{chr(256 + i): b for i, b in enumerate(others)}}


_BYTE_OF_CHAR = _byte_of_char()


def decode_text(tokenizer, ids: list[int], keep: int = 0) -> str:
    """`ids` as text, special tokens left out, ending on a whole character. Byte-level BPE
    spreads one character over up to 4 tokens, and a generation that stops inside one would end
    in a replacement character: with a byte-level tokenizer the bytes of a last character left
    incomplete are dropped (never those of the first `keep` tokens, e.g. the prompt's). Other
    tokenizers decode as they do."""
    if type(tokenizer.decoder).__name__ != "ByteLevel":
        return tokenizer.decode(ids, skip_special_tokens=True)
    special = set(tokenizer.get_added_tokens_decoder())  # their ids
    pieces = [bytes(_BYTE_OF_CHAR[c] for c in tokenizer.id_to_token(i))
              for i in ids if i not in special]
    data = b"".join(pieces)
    kept = len(b"".join(pieces[:keep]))
    for back in range(1, min(4, len(data) - kept) + 1):  # the last lead byte, if any
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte
            length = (2 if 0xC0 <= byte < 0xE0 else 3 if 0xE0 <= byte < 0xF0
                      else 4 if 0xF0 <= byte < 0xF8 else 1)
            if back < length:  # cut short
                data = data[:-back]
            break
    return data.decode("utf-8", errors="replace")
