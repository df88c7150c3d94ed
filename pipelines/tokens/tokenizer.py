"""The tokenizer of a token dataset: a byte-level BPE trained from a stream of texts, or one the
user supplies from local files (nothing is downloaded).

Supplied forms: a Hugging Face `tokenizer.json`; a GPT-2 style `vocab.json` with `merges.txt`
beside it; or a folder holding either. The end-of-document token must be in the vocabulary; it is
made special when it is not already (GPT-2's `vocab.json` lists `<|endoftext|>` as a plain entry),
and only then is the written `tokenizer.json` different from the supplied file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines.core.contract import file_input
from schemas.tokens import EOT_TOKEN


class TokenizerError(ValueError):
    """A supplied tokenizer that cannot be used; the message says why and what to do."""


@dataclass
class DatasetTokenizer:
    tokenizer: Tokenizer
    json_text: str  # what goes into the token folder's tokenizer.json, byte for byte
    source: dict = field(default_factory=dict)  # recorded in the manifest

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.json_text.encode("utf-8")).hexdigest()


def train_tokenizer(texts, vocab_size: int, min_frequency: int = 2,
                    special_tokens=(), eot_token: str = EOT_TOKEN, length: int | None = None
                    ) -> Tokenizer:
    """A byte-level BPE (every byte representable) whose first special token is `eot_token`.
    `texts` is any iterable; it is consumed once and never held (the trainer keeps word counts).
    The merges depend on the word counts only, not on the order of the texts (tested)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = [eot_token] + [t for t in special_tokens if t != eot_token]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer, length=length)
    return tokenizer


def supplied_files(path: str) -> list[str]:
    """The local files a `--tokenizer PATH` names: [tokenizer.json] or [vocab.json, merges.txt]."""
    if "://" in path and not path.startswith("file://"):
        raise TokenizerError(f"--tokenizer {path}: give a local file; tokenizers are never "
                             f"downloaded")
    path = path.removeprefix("file://")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "tokenizer.json")):
            return [os.path.join(path, "tokenizer.json")]
        if os.path.isfile(os.path.join(path, "vocab.json")):
            return supplied_files(os.path.join(path, "vocab.json"))
        raise TokenizerError(f"--tokenizer {path}: the folder holds neither tokenizer.json nor "
                             f"vocab.json + merges.txt")
    if not os.path.isfile(path):
        raise TokenizerError(f"--tokenizer {path}: no such file")
    if os.path.basename(path) == "vocab.json":
        merges = os.path.join(os.path.dirname(path), "merges.txt")
        if not os.path.isfile(merges):
            raise TokenizerError(f"--tokenizer {path}: a vocab.json needs merges.txt beside it "
                                 f"({merges} is missing)")
        return [path, merges]
    if os.path.basename(path) == "merges.txt":
        return supplied_files(os.path.join(os.path.dirname(path), "vocab.json"))
    return [path]


def load_tokenizer(path: str, eot_token: str = EOT_TOKEN) -> DatasetTokenizer:
    """A supplied tokenizer, checked: it must load and hold `eot_token`."""
    files = supplied_files(path)
    if len(files) == 2:
        try:
            tokenizer = Tokenizer(models.BPE.from_file(*files))
        except Exception as err:
            raise TokenizerError(f"--tokenizer {path}: not a GPT-2 style vocab.json + merges.txt "
                                 f"pair ({err})") from None
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        json_text = None
    else:
        with open(files[0], encoding="utf-8") as f:
            json_text = f.read()
        try:
            tokenizer = Tokenizer.from_str(json_text)
        except Exception as err:
            raise TokenizerError(f"--tokenizer {path}: not a Hugging Face tokenizer.json "
                                 f"({str(err).splitlines()[0][:200]})") from None
    eot = tokenizer.token_to_id(eot_token)
    specials = sorted(t.content for t in tokenizer.get_added_tokens_decoder().values()
                      if t.special)
    if eot is None:
        raise TokenizerError(
            f"--tokenizer {path} has no {eot_token!r} token to end documents with; name its "
            f"end-of-document token with --eot-token (its special tokens: "
            f"{', '.join(specials) or 'none'})")
    changed = eot_token not in specials
    if changed:  # in the vocabulary as a plain entry: make it special, keeping its id
        tokenizer.add_special_tokens([AddedToken(eot_token, special=True, normalized=False)])
        json_text = None
    if json_text is None:
        json_text = tokenizer.to_str()
    source = {"kind": "supplied", "path": path, "changed": changed,
              "files": [file_input(os.path.abspath(f)) for f in files]}
    return DatasetTokenizer(tokenizer, json_text, source)


def for_encoding(json_text: str, eot_token: str) -> tuple[Tokenizer, int]:
    """The tokenizer as the encoder uses it: special-token strings that occur in a document's
    text are encoded as text, so a page quoting `<|endoftext|>` cannot end a document early."""
    tokenizer = Tokenizer.from_str(json_text)
    tokenizer.encode_special_tokens = True
    return tokenizer, tokenizer.token_to_id(eot_token)


def describe(tokenizer: DatasetTokenizer) -> str:
    kind = tokenizer.source.get("kind", "?")
    return (f"{kind} tokenizer, {tokenizer.tokenizer.get_vocab_size():,} tokens, sha256 "
            f"{tokenizer.sha256[:12]}" + (f" ({tokenizer.source['path']})"
                                         if kind == "supplied" else ""))

