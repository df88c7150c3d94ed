"""The packed token shard format: what the tokenize stage writes and the trainer reads.

A token folder (`<dataset>/tokenize/`, the tokenize stage folder) holds, per split (`train`, `val`) and shard number:

- `data/<split>-<nnnnn>.bin`: raw little-endian token ids, `uint16` when the vocabulary fits, else
  `uint32`; documents are concatenated, each followed by the end-of-text token. Readable with
  nothing but `numpy.memmap(path, dtype=..., mode="r")`, the layout of nanoGPT's `train.bin`.
- `data/<split>-<nnnnn>.idx`: little-endian `uint64`, the end offset (exclusive, in tokens, separator
  included) of every document in the `.bin` file, in order.
- `tokenizer.json`: the Hugging Face `tokenizers` file that produced the ids.
- `manifest.json`: the stage manifest; its `tokens` section is `TokenShardsInfo` below.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

SPLITS = ("train", "val")
EOT_TOKEN = "<|endoftext|>"
TOKEN_FORMAT = "corpus-token-shards/1"


def token_dtype_name(vocab_size: int) -> str:
    """`uint16` when every id fits in 16 bits, else `uint32`."""
    return "uint16" if vocab_size <= 2**16 else "uint32"


def shard_file_names(split: str, index: int) -> tuple[str, str]:
    """The `.bin` and `.idx` file names of shard `index` of `split`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    stem = f"{split}-{index:05d}"
    return f"{stem}.bin", f"{stem}.idx"


@dataclass
class TokenShard:
    bin: str  # file name, relative to the token folder
    idx: str
    tokens: int
    documents: int
    bin_sha256: str
    idx_sha256: str


@dataclass
class TokenShardsInfo:
    dtype: str
    vocab_size: int
    eot_id: int
    tokenizer_file: str
    tokenizer_sha256: str
    dataset_manifest_sha256: str  # sha256 of the shard stage's manifest.json the tokens came from
    val_fraction: float
    splits: dict[str, list[TokenShard]] = field(default_factory=dict)
    format: str = TOKEN_FORMAT
    eot_token: str = EOT_TOKEN
    # where the tokenizer came from: {"kind": "trained", "sample": {...}} or
    # {"kind": "supplied", "files": [{"path", "sha256"}], "changed": bool}
    tokenizer_source: dict = field(default_factory=dict)
    seed: int = 0  # the split and the shuffle are functions of (seed, document id)
    shard_tokens: int = 0  # the target size of a shard

    def tokens(self, split: str) -> int:
        return sum(s.tokens for s in self.splits.get(split, []))

    def documents(self, split: str) -> int:
        return sum(s.documents for s in self.splits.get(split, []))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TokenShardsInfo":
        if data.get("format") != TOKEN_FORMAT:
            raise ValueError(f"unsupported token shard format {data.get('format')!r}; "
                             f"this code reads {TOKEN_FORMAT!r}")
        splits = {name: [TokenShard(**s) for s in shards]
                  for name, shards in data.get("splits", {}).items()}
        return cls(**{**data, "splits": splits})

    @classmethod
    def from_manifest_file(cls, path: str) -> "TokenShardsInfo":
        """Read the `tokens` section of a token folder's `manifest.json` (a local path)."""
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if "tokens" not in manifest:
            raise ValueError(f"{path} is not a token shard manifest (no 'tokens' section)")
        return cls.from_dict(manifest["tokens"])
