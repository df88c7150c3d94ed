"""Tokenize stage: a tokenizer (supplied, or trained on a seeded sample), then packed token shards.

The format is `schemas/tokens.py`. Every document is followed by the end-of-document token.
Everything about a document's place is a pure function of its id and the seed (one blake2b hash):
its split (validation when a uniform number from the hash is below `val_fraction`), whether it is
in the tokenizer's sample, and its position in the global shuffle (two 64-bit sort keys). A split
with n shards gives shard `k1 * n >> 64`, so shard 0 holds the smallest keys, and each shard is
sorted by key: read one after the other, the shards of a split are its documents in one seeded
random order, whatever the engine, the worker count or the memory limit.

The number of shards per split is chosen before encoding, from the corpus's text bytes (Parquet
footers) and the tokenizer's tokens per byte on a probe of the corpus, to give shards of about
`shard_tokens`. Tokens never cross Beam's shuffle: workers write sorted runs under
`work/runs/`, and only the runs' names are grouped by shard (`pipelines/tokens/pack.py`).
That job's composite PTransform is `TokenizeDocuments`: documents -> the shards it wrote and the
`no_tokens` rejects (`StageOutput`).
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import uuid

import apache_beam as beam
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.core.contract import (
    DATA_DIR,
    StageDir,
    file_input,
    sha256_file,
    streaming_parquet,
)
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.job import Context, Job
from pipelines.core.progress import count_in
from pipelines.core.spill import remove_folder, windowed
from pipelines.core.tables import ReadTable, StageOutput, StageTables
from pipelines.tokens.pack import RUNS_DIR, RunBuffer, write_shard
from pipelines.tokens.tokenizer import (
    DatasetTokenizer,
    describe,
    for_encoding,
    load_tokenizer,
    supplied_files,
    train_tokenizer,
)
from schemas.config import EngineConfig, TokenizeConfig
from schemas.document import rejected_record
from schemas.tokens import SPLITS, TokenShard, TokenShardsInfo, shard_file_names, token_dtype_name

STAGE = "tokenize"
TOKENIZER_FILE = "tokenizer.json"
WORK_DIR = "work"
SAMPLE_BINS = 1 << 16  # the sample's size is met to within 1/65536 of the corpus
PROBE_BYTES = 1 << 20  # text read to measure the tokenizer's tokens per byte


class DocumentKeys:
    """The seeded hash of a document id, cut into the numbers that place the document."""

    __slots__ = ("split_u", "sample_bin", "k1", "k2")

    def __init__(self, doc_id: str, seed: int):
        d = hashlib.blake2b(f"{seed}\x00{doc_id}".encode("utf-8"), digest_size=32).digest()
        self.split_u = int.from_bytes(d[0:8], "little") / 2.0 ** 64  # uniform in [0, 1)
        self.sample_bin = int.from_bytes(d[8:16], "little") >> 48  # 0 .. SAMPLE_BINS-1
        self.k1 = int.from_bytes(d[16:24], "little")
        self.k2 = int.from_bytes(d[24:32], "little")

    def split(self, val_fraction: float) -> str:
        return "val" if self.split_u < val_fraction else "train"

    def shard(self, num_shards: int) -> int:
        return (self.k1 * num_shards) >> 64


def document_split(doc_id: str, seed: int, val_fraction: float) -> str:
    """`train` or `val`: a pure function of the id and the seed (no list of ids anywhere)."""
    return DocumentKeys(doc_id, seed).split(val_fraction)


# --- the tokenizer's sample ---------------------------------------------------------------------

class SampleHistogram(beam.CombineFn):
    """Documents and bytes per sample bin (of the training split): 1 MiB, whatever the corpus."""

    def create_accumulator(self):
        return np.zeros((2, SAMPLE_BINS), dtype=np.int64)

    def add_input(self, acc, item):
        acc[0, item[0]] += 1
        acc[1, item[0]] += item[1]
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        total = next(accs).copy()
        for acc in accs:
            total += acc
        return total

    def extract_output(self, acc):
        return acc


def sample_cut(histogram: np.ndarray, max_documents: int, max_bytes: int) -> int:
    """The number of leading bins in the sample: as many as fit both limits (0: no limit),
    at least one."""
    fits = np.ones(SAMPLE_BINS, dtype=bool)
    for row, limit in ((0, max_documents), (1, max_bytes)):
        if limit:
            fits &= np.cumsum(histogram[row]) <= limit
    cut = SAMPLE_BINS if fits.all() else int(np.argmin(fits))
    return max(cut, 1)


class WriteSample(beam.DoFn):
    """The sampled texts of a bundle, streamed into one Parquet file under `work/sample/`."""

    def __init__(self, folder: str, seed: int, val_fraction: float, config: TokenizeConfig):
        self.folder, self.seed, self.val_fraction = folder, seed, val_fraction
        self.config = config

    def setup(self):
        self.documents = Metrics.counter(STAGE, "sample_documents")
        self.bytes = Metrics.counter(STAGE, "sample_bytes")

    def start_bundle(self):
        self.writer, self.rows, self.held, self.url = None, [], 0, None
        self.cut = None

    def process(self, item, histogram):
        if self.cut is None:  # the side input is the same for the whole bundle
            self.cut = sample_cut(histogram, self.config.sample_documents,
                                  self.config.sample_bytes)
        sample_bin, size, text = item
        if sample_bin >= self.cut:
            return
        self.documents.inc()
        self.bytes.inc(size)
        self.rows.append(text)
        self.held += size
        if self.held >= 8 << 20:
            self._write()

    def _write(self):
        if not self.rows:
            return
        table = pa.table({"text": pa.array(self.rows, pa.large_string())})
        if self.writer is None:
            self.url = posixpath.join(self.folder, f"{uuid.uuid4().hex}.parquet")
            self.file = fsspec.open(self.url, "wb").open()
            self.writer = pq.ParquetWriter(self.file, table.schema, compression="zstd")
        self.writer.write_table(table)
        self.rows, self.held = [], 0

    def finish_bundle(self):
        self._write()
        if self.writer is not None:
            self.writer.close()
            self.file.close()
            yield windowed(self.url)


def draw_sample(stage: StageDir, urls: list[str], config: TokenizeConfig, seed: int,
                engine: EngineConfig) -> tuple[list[str], dict]:
    """Write the tokenizer's sample (training documents of smallest sample hash, up to the
    configured size) under `work/sample/`; return its files and size."""
    folder = stage.url(WORK_DIR, "sample")
    val_fraction = config.val_fraction

    def keyed(doc):
        keys = DocumentKeys(doc["id"], seed)
        if keys.split(val_fraction) == "train" and doc["text"]:
            yield keys.sample_bin, len(doc["text"].encode("utf-8")), doc["text"]

    p = make_pipeline(engine)
    docs = p | "Read" >> ReadTable(urls, columns=["id", "text"]) | "Key" >> beam.FlatMap(keyed)
    histogram = (docs | "Sizes" >> beam.Map(lambda d: (d[0], d[1]))
                 | "Histogram" >> beam.CombineGlobally(SampleHistogram()))
    list_url = posixpath.join(folder, "files.json")

    def write_list(files):
        with fsspec.open(list_url, "w") as f:
            json.dump(sorted(files), f)

    (docs | "Write" >> beam.ParDo(WriteSample(folder, seed, val_fraction, config),
                                  histogram=beam.pvalue.AsSingleton(histogram))
     | "Files" >> beam.combiners.ToList() | "List" >> beam.Map(write_list))
    counters = run_pipeline(p)
    with fsspec.open(list_url, "r") as f:
        files = json.load(f)
    return files, {"documents": counters.get(f"{STAGE}/sample_documents", 0),
                   "bytes": counters.get(f"{STAGE}/sample_bytes", 0)}


def sample_texts(urls: list[str]):
    """The sample's texts, a batch at a time."""
    for url in urls:
        with fsspec.open(url, "rb") as f:
            for batch in streaming_parquet(f).iter_batches(columns=["text"], batch_size=1024):
                yield from batch.column(0).to_pylist()


def dataset_tokenizer(stage: StageDir, urls: list[str], config: TokenizeConfig, seed: int,
                      engine: EngineConfig, log=print) -> DatasetTokenizer:
    if config.tokenizer:
        return load_tokenizer(config.tokenizer, config.eot_token)
    files, size = draw_sample(stage, urls, config, seed, engine)
    log(f"tokenize: training a {config.vocab_size:,}-token byte-level BPE on a sample of "
        f"{size['documents']:,} documents ({size['bytes'] / 1e6:,.1f} MB)")
    tokenizer = train_tokenizer(sample_texts(files), config.vocab_size, config.min_frequency,
                                config.special_tokens, config.eot_token,
                                length=size["documents"])
    return DatasetTokenizer(tokenizer, tokenizer.to_str(), {"kind": "trained", "sample": {
        **size, "limit_documents": config.sample_documents, "limit_bytes": config.sample_bytes}})


def shared_tokenizer(stage: StageDir, urls: list[str], config: TokenizeConfig, seed: int,
                     engine: EngineConfig, log=print) -> dict[str, int]:
    """One tokenizer for several corpora (`corpus ablate`'s arms), written to the stage's
    `tokenizer.json`: trained, as a dataset's own is, on the training documents of smallest
    sample hash of all of `urls` together (a document in two corpora counts twice), so every
    corpus gives its share and none of their validation documents is seen. Returns the
    stage's counters (records: the sample's documents)."""
    files, size = draw_sample(stage, urls, config, seed, engine)
    log(f"tokenizer: training a {config.vocab_size:,}-token byte-level BPE on a sample of "
        f"{size['documents']:,} documents ({size['bytes'] / 1e6:,.1f} MB) of every corpus")
    tokenizer = train_tokenizer(sample_texts(files), config.vocab_size, config.min_frequency,
                                config.special_tokens, config.eot_token,
                                length=size["documents"])
    with stage.fs.open(stage.local(TOKENIZER_FILE), "w") as f:
        f.write(tokenizer.to_str())
    clean_work(stage)
    return {"tokenizer/records_in": size["documents"], "tokenizer/sample_bytes": size["bytes"]}


# --- shards per split ---------------------------------------------------------------------------

def corpus_size(urls: list[str]) -> tuple[int, int]:
    """(documents, bytes of the text column) from the Parquet footers, reading no data."""
    documents = text_bytes = 0
    for url in urls:
        with fsspec.open(url, "rb") as f:
            meta = pq.ParquetFile(f).metadata
        documents += meta.num_rows
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                if group.column(c).path_in_schema == "text":
                    text_bytes += group.column(c).total_uncompressed_size
    return documents, text_bytes


def tokens_per_byte(urls: list[str], tokenizer) -> float:
    """Measured on the first PROBE_BYTES of text of the corpus (1/4 when there is none)."""
    texts, held = [], 0
    for url in urls:
        with fsspec.open(url, "rb") as f:
            for batch in streaming_parquet(f).iter_batches(columns=["text"], batch_size=256):
                for text in batch.column(0).to_pylist():
                    if text:
                        texts.append(text)
                        held += len(text.encode("utf-8"))
                if held >= PROBE_BYTES:
                    break
        if held >= PROBE_BYTES:
            break
    if not held:
        return 0.25
    return sum(len(e.ids) for e in tokenizer.encode_batch(texts)) / held


def plan_shards(urls: list[str], tokenizer, config: TokenizeConfig) -> tuple[dict, dict]:
    """Shards per split for shards of about `shard_tokens`, and the estimate behind it."""
    documents, text_bytes = corpus_size(urls)
    ratio = tokens_per_byte(urls, tokenizer)
    tokens = text_bytes * ratio + documents
    share = {"train": 1 - config.val_fraction, "val": config.val_fraction}
    shards = {split: max(1, math.ceil(tokens * share[split] / config.shard_tokens))
              for split in SPLITS}
    return shards, {"documents": documents, "text_bytes": text_bytes,
                    "tokens_per_byte": round(ratio, 4), "tokens": int(tokens)}


# --- encode and pack ----------------------------------------------------------------------------

class EncodeDocuments(beam.DoFn):
    """Documents -> token runs by (split, shard), `encode_batch` a batch at a time; documents
    with no tokens go to `rejected`. Output: the runs written ((split, shard), run)."""

    def __init__(self, tokenizer_json: str, eot_token: str, dtype: str, shards: dict,
                 seed: int, config: TokenizeConfig, runs_url: str):
        self.tokenizer_json, self.eot_token, self.dtype = tokenizer_json, eot_token, dtype
        self.shards, self.seed, self.config, self.runs_url = shards, seed, config, runs_url

    def setup(self):
        self.tokenizer, self.eot = for_encoding(self.tokenizer_json, self.eot_token)
        self.np_dtype = np.dtype(self.dtype).newbyteorder("<")
        self.tokens = {s: Metrics.counter(STAGE, f"tokens_{s}") for s in SPLITS}
        self.docs = {s: Metrics.counter(STAGE, f"documents_{s}") for s in SPLITS}
        self.runs = Metrics.counter(STAGE, "runs_written")
        self.held = Metrics.distribution(STAGE, "bytes_held")

    def start_bundle(self):
        self.batch = []
        self.buffer = RunBuffer(self.runs_url, self.config.memory_limit)

    def process(self, doc):
        self.batch.append(doc)
        if len(self.batch) >= self.config.batch_documents:
            yield from self._encode()

    def _encode(self):
        docs, self.batch = self.batch, []
        encodings = self.tokenizer.encode_batch([d["text"] or "" for d in docs])
        for doc, encoding in zip(docs, encodings):
            ids = encoding.ids
            if not ids:
                yield pvalue.TaggedOutput("rejected", rejected_record(
                    STAGE, "no_tokens", id=doc["id"], url=doc.get("url")))
                continue
            ids.append(self.eot)
            tokens = np.asarray(ids, dtype=self.np_dtype)
            keys = DocumentKeys(doc["id"], self.seed)
            split = keys.split(self.config.val_fraction)
            self.tokens[split].inc(len(tokens))
            self.docs[split].inc()
            k3 = int.from_bytes(hashlib.blake2b(tokens.tobytes(), digest_size=8).digest(),
                                "little")
            yield from self._runs(self.buffer.add((split, keys.shard(self.shards[split])),
                                                  (keys.k1, keys.k2, k3), tokens))

    def _runs(self, written):
        if written:
            self.held.update(self.buffer.peak_size)
            self.runs.inc(len(written))
        yield from written

    def finish_bundle(self):
        for item in self._encode():
            if isinstance(item, pvalue.TaggedOutput):
                yield pvalue.TaggedOutput(item.tag, windowed(item.value))
            else:
                yield windowed(item)
        for item in self._runs(self.buffer.flush()):
            yield windowed(item)


class WriteTokenShard(beam.DoFn):
    """One shard from its runs, merged as a stream (`pack.write_shard`)."""

    def __init__(self, data_url: str, dtype: str, memory_limit: int):
        self.data_url, self.dtype, self.memory_limit = data_url, dtype, memory_limit

    def process(self, element):
        (split, shard), runs = element
        bin_name, idx_name = shard_file_names(split, shard)
        docs, tokens = write_shard([(r[0], r[1]) for r in runs],
                                   posixpath.join(self.data_url, bin_name),
                                   posixpath.join(self.data_url, idx_name),
                                   np.dtype(self.dtype).newbyteorder("<"), self.memory_limit)
        yield split, shard, docs, tokens


class TokenizeDocuments(beam.PTransform):
    """Documents -> `StageOutput`: the token shards written under `data/` ((split, shard,
    documents, tokens) each), and `no_tokens` rejects. Documents are encoded into sorted runs
    under `work/runs/`; only the runs' names are grouped by shard, and each shard is merged from
    its runs as a stream."""

    def __init__(self, stage: StageDir, tokenizer_json: str, dtype: str, shards: dict,
                 seed: int, config: TokenizeConfig, progress: str | None = None):
        super().__init__()
        self.stage, self.tokenizer_json, self.dtype = stage, tokenizer_json, dtype
        self.shards, self.seed, self.config, self.progress = shards, seed, config, progress

    def expand(self, docs):
        config = self.config
        encoded = (docs
                   | "CountIn" >> count_in(STAGE, self.progress)
                   | "Encode" >> beam.ParDo(EncodeDocuments(
                       self.tokenizer_json, config.eot_token, self.dtype, self.shards,
                       self.seed, config, self.stage.url(WORK_DIR, RUNS_DIR)))
                   .with_outputs("rejected", main="runs"))
        shards = (encoded.runs
                  | "GroupRuns" >> beam.GroupByKey()
                  | "WriteShard" >> beam.ParDo(WriteTokenShard(
                      self.stage.url(DATA_DIR), self.dtype, config.memory_limit)))
        return StageOutput(shards, encoded.rejected)


def build_tokenize(stage: StageDir, corpus_urls: list[str], config: TokenizeConfig, seed: int,
                   engine: EngineConfig, log=print,
                   progress: str | None = None) -> tuple[dict[str, int], dict]:
    """Run the stage; return its counters and the manifest's description of the tokenizer.
    `progress`: the folder of the live records-in count (`pipelines.core.progress`)."""
    tokenizer = dataset_tokenizer(stage, corpus_urls, config, seed, engine, log)
    with stage.fs.open(stage.local(TOKENIZER_FILE), "w", encoding="utf-8", newline="") as f:
        f.write(tokenizer.json_text)
    dtype = token_dtype_name(tokenizer.tokenizer.get_vocab_size())
    encoder, _ = for_encoding(tokenizer.json_text, config.eot_token)
    shards, estimate = plan_shards(corpus_urls, encoder, config)
    log(f"tokenize: {describe(tokenizer)}; about {estimate['tokens']:,} tokens -> "
        f"{shards['train']} train + {shards['val']} val shard(s)")

    p = make_pipeline(engine)
    out = (p | "Read" >> ReadTable(corpus_urls, columns=["id", "url", "text"])
           | "Tokenize" >> TokenizeDocuments(stage, tokenizer.json_text, dtype, shards, seed,
                                             config, progress))
    StageTables(stage, engine).rejected(out.rejected)  # the shards are written as they merge
    counters = run_pipeline(p, maxima=(STAGE,))
    clean_work(stage)
    return counters, {**tokenizer.source, "estimate": estimate, "shards_planned": shards}


def clean_work(stage: StageDir) -> None:
    remove_folder(stage.url(WORK_DIR))


def token_info(stage: StageDir, dataset_manifest_sha256: str, config: TokenizeConfig,
               seed: int, source: dict) -> TokenShardsInfo:
    """Describe the written shards (counts from the index files, checksums from the bytes)."""
    tokenizer_path = stage.local(TOKENIZER_FILE)
    with stage.fs.open(tokenizer_path, "r", encoding="utf-8") as f:
        tokenizer, eot = for_encoding(f.read(), config.eot_token)
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
        dtype=dtype, vocab_size=tokenizer.get_vocab_size(), eot_id=eot,
        tokenizer_file=TOKENIZER_FILE, tokenizer_sha256=sha256_file(stage.fs, tokenizer_path),
        dataset_manifest_sha256=dataset_manifest_sha256, val_fraction=config.val_fraction,
        splits=splits, eot_token=config.eot_token, tokenizer_source=source, seed=seed,
        shard_tokens=config.shard_tokens)


def count_packed_documents(stage: StageDir) -> int:
    total = 0
    for idx_path in stage.files(DATA_DIR, ".idx"):
        total += stage.fs.size(idx_path) // 8
    return total


def plan(ctx: Context) -> Job:
    """Tokenize the corpus; a supplied tokenizer's files are inputs too (a changed file makes
    a new run)."""
    config = ctx.config
    inputs = list(ctx.upstream_inputs)
    corpus_sha = inputs[0]["sha256"]
    if config.tokenize.tokenizer:
        inputs += [file_input(f) for f in supplied_files(config.tokenize.tokenizer)]
    built: dict = {}

    def build(stage: StageDir, progress) -> dict:
        counters, built["source"] = build_tokenize(
            stage, ctx.upstream_urls, config.tokenize, config.seed, config.engine,
            progress.log(ctx.log), progress=progress.folder)
        return counters

    return Job(inputs=inputs, build=build, count_out=count_packed_documents,
               data_files=lambda st: st.files(DATA_DIR) + [st.local(TOKENIZER_FILE)],
               extra=lambda st: {"tokens": token_info(st, corpus_sha, config.tokenize,
                                                      config.seed, built["source"]).to_dict()})
