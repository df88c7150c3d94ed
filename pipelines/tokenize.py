"""Tokenize stage: train a byte-level BPE tokenizer on the corpus and pack token shards.

The format is `schemas/tokens.py`: raw little-endian ids per split and shard, a uint64 index of
document ends, `tokenizer.json` and a manifest. Each document is followed by the end-of-text id.
The validation split is the `val_fraction` of documents with the smallest seeded hash of their id
(at least one document, never all), so it is the same whatever the engine or worker count.
"""

from __future__ import annotations

import hashlib
import math
import posixpath

import apache_beam as beam
import fsspec
import numpy as np
from apache_beam import pvalue
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines.engine import make_pipeline, run_pipeline
from pipelines.stage import DATA_DIR, REJECTED_DIR, StageDir, sha256_file
from pipelines.tables import ReadTable, count_in, read_parquet_rows, stable_hash, write_rejected
from schemas.config import EngineConfig, TokenizeConfig
from schemas.document import rejected_record
from schemas.tokens import (EOT_TOKEN, SPLITS, TokenShard, TokenShardsInfo, shard_file_names,
                            token_dtype_name)

STAGE = "tokenize"
TOKENIZER_FILE = "tokenizer.json"


def train_tokenizer(texts, vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE tokenizer (every byte representable) with the end-of-text token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def validation_ids(ids: list[str], fraction: float, seed: int) -> set[str]:
    if fraction <= 0 or len(ids) < 2:
        return set()
    n_val = min(max(1, math.ceil(len(ids) * fraction)), len(ids) - 1)
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    return set(ranked[:n_val])


class EncodeDocuments(beam.DoFn):
    def __init__(self, tokenizer_json: str, dtype: str):
        self.tokenizer_json, self.dtype = tokenizer_json, dtype

    def setup(self):
        self.tokenizer = Tokenizer.from_str(self.tokenizer_json)
        self.eot = self.tokenizer.token_to_id(EOT_TOKEN)

    def process(self, doc, val_ids):
        ids = self.tokenizer.encode(doc["text"] or "").ids
        if not ids:
            yield pvalue.TaggedOutput("rejected", rejected_record(
                STAGE, "no_tokens", id=doc["id"], url=doc.get("url")))
            return
        tokens = np.asarray(ids + [self.eot], dtype=self.dtype)
        split = "val" if doc["id"] in val_ids else "train"
        yield split, (doc["id"], tokens)


class WriteTokenShard(beam.DoFn):
    def __init__(self, folder: str, num_shards: int, dtype: str):
        self.folder, self.num_shards, self.dtype = folder, num_shards, dtype

    def process(self, element):
        (split, index), docs = element
        docs = sorted(docs, key=lambda d: d[0])
        bin_name, idx_name = shard_file_names(split, index)
        ends = np.cumsum([len(t) for _, t in docs], dtype=np.uint64)
        with fsspec.open(posixpath.join(self.folder, bin_name), "wb") as f:
            for _, tokens in docs:
                f.write(tokens.astype(np.dtype(self.dtype).newbyteorder("<")).tobytes())
        with fsspec.open(posixpath.join(self.folder, idx_name), "wb") as f:
            f.write(ends.astype("<u8").tobytes())
        yield split, index


def build_tokenize(stage: StageDir, corpus_urls: list[str], config: TokenizeConfig, seed: int, engine: EngineConfig) -> dict[str, int]:
    docs = sorted((row for url in corpus_urls for row in read_parquet_rows(url, ["id", "text"])),
                  key=lambda r: r["id"])
    tokenizer = train_tokenizer((d["text"] for d in docs), config.vocab_size,
                                config.min_frequency)
    with stage.fs.open(stage.local(TOKENIZER_FILE), "w") as f:
        f.write(tokenizer.to_str())
    dtype = token_dtype_name(tokenizer.get_vocab_size())
    val_ids = validation_ids([d["id"] for d in docs], config.val_fraction, seed)
    n = config.num_shards

    p = make_pipeline(engine)
    val = p | "ValIds" >> beam.Create([sorted(val_ids)])
    encoded = (p | "Read" >> ReadTable(corpus_urls, columns=["id", "url", "text"])
               | "CountIn" >> count_in(STAGE)
               | "Encode" >> beam.ParDo(EncodeDocuments(tokenizer.to_str(), dtype),
                                        val_ids=beam.pvalue.AsSingleton(
                                            val | beam.Map(frozenset)))
               .with_outputs("rejected", main="encoded"))
    (encoded.encoded
     | "KeyByShard" >> beam.Map(lambda e: ((e[0], stable_hash(e[1][0]) % n), e[1]))
     | "GroupShard" >> beam.GroupByKey()
     | "WriteShard" >> beam.ParDo(WriteTokenShard(stage.url(DATA_DIR), n, dtype)))
    write_rejected(encoded.rejected, stage.url(REJECTED_DIR))
    return run_pipeline(p)


def token_info(stage: StageDir, dataset_manifest_sha256: str, config: TokenizeConfig) -> TokenShardsInfo:
    """Describe the written shards (counts from the index files, checksums from the bytes)."""
    tokenizer_path = stage.local(TOKENIZER_FILE)
    with stage.fs.open(tokenizer_path, "r") as f:
        tokenizer = Tokenizer.from_str(f.read())
    dtype = token_dtype_name(tokenizer.get_vocab_size())
    splits: dict[str, list[TokenShard]] = {}
    for split in SPLITS:
        for bin_path in stage.files(DATA_DIR, ".bin"):
            name = posixpath.basename(bin_path)
            if not name.startswith(split + "-"):
                continue
            idx_path = bin_path[:-4] + ".idx"
            with stage.fs.open(idx_path, "rb") as f:
                ends = np.frombuffer(f.read(), dtype="<u8")
            splits.setdefault(split, []).append(TokenShard(
                bin=posixpath.relpath(bin_path, stage.path),
                idx=posixpath.relpath(idx_path, stage.path),
                tokens=int(ends[-1]) if len(ends) else 0, documents=int(len(ends)),
                bin_sha256=sha256_file(stage.fs, bin_path),
                idx_sha256=sha256_file(stage.fs, idx_path)))
    return TokenShardsInfo(
        dtype=dtype, vocab_size=tokenizer.get_vocab_size(),
        eot_id=tokenizer.token_to_id(EOT_TOKEN), tokenizer_file=TOKENIZER_FILE,
        tokenizer_sha256=sha256_file(stage.fs, tokenizer_path),
        dataset_manifest_sha256=dataset_manifest_sha256, val_fraction=config.val_fraction,
        splits=splits)


def count_packed_documents(stage: StageDir) -> int:
    total = 0
    for idx_path in stage.files(DATA_DIR, ".idx"):
        total += stage.fs.size(idx_path) // 8
    return total
