"""Extract stage: input records -> documents.

Readers (`pipelines/readers/`) turn every input file (WARC, ARC, WET, JSONL, Parquet) into
records or counted rejects. A text record (WET conversion, JSONL, Parquet) is already a document's
text; a captured page is reduced to its main text and metadata with trafilatura or resiliparse
(`--extractor`; `pipelines/extract/html.py`, in a child process with a per-document time limit).

Rejects: `unchanged` (a refresh crawl's 304 revisit record), `revisit` (no payload),
`http_<status>` (not a 200; an unknown status passes), `not_html`, `no_text` (nothing left),
`extract_error`, `extract_timeout`, and what the readers reject (`corrupt_record`, `too_large`);
with `read.holdout`, `held_out` (or, with `holdout_side = "only"`, `not_held_out`), decided by a
hash of the id before extraction.

The stage's composite PTransform is `ExtractDocuments` (file URLs -> `StageOutput`); the build
reads: input files -> `ExtractDocuments` -> `StageTables.write`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from urllib.parse import urlsplit

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from pipelines.core.contract import StageDir, file_input
from pipelines.core.engine import make_pipeline, run_pipeline
from pipelines.core.job import Context, Job
from pipelines.core.progress import Tally
from pipelines.core.tables import StageOutput, StageTables
from pipelines.extract.html import ExtractTimeout, TimedExtractor
from pipelines.readers import READERS, detect_reader, read_records
from schemas.config import EngineConfig, ExtractConfig, ReadConfig
from schemas.document import empty_document, rejected_record

STAGE = "extract"


def document_id(url: str | None, content_digest: str, source: str = "") -> str:
    """Stable id: the URL and the payload digest (two captures of a URL differ); a record
    without a URL is named by its place in its source file instead."""
    return hashlib.sha256(f"{url or source}\n{content_digest}".encode()).hexdigest()[:32]


def held_out(doc_id: str, share: float) -> bool:
    """Whether a document is in the held-out share: a hash of its id, so the same documents
    are held out whatever the settings of the stages after reading (every arm of an ablation
    leaves out the same ones)."""
    digest = hashlib.sha256(f"holdout\n{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2 ** 64


def parse_fetch_time(value: str | None):
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # the column is UTC; a naive time is taken as UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def looks_like_html(content_type: str, body: bytes) -> bool:
    if content_type:
        lowered = content_type.lower()
        if "html" in lowered:
            return True
        if not lowered.startswith(("text/plain", "application/octet-stream", "unk")):
            return False
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")) \
        and (b"<html" in head or b"<!doctype html" in head)


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


class ExtractFiles(beam.DoFn):
    """An input file -> its documents, and a reject with its reason for every other record.

    Records are extracted where they are read: page bodies never cross a shuffle (only file
    names do), so memory stays flat whatever the size of the crawl."""

    def __init__(self, config: ExtractConfig, read: ReadConfig, snapshot: str,
                 progress: str | None = None):
        self.config, self.read, self.snapshot = config, read, snapshot
        self.progress = progress  # folder of the live records-in count (pipelines.core.progress)

    def setup(self):
        self.tally = Tally(self.progress)
        self.extractor = TimedExtractor(self.config.timeout_s, {
            "extractor": self.config.extractor, "favor_precision": self.config.favor_precision,
            "include_tables": self.config.include_tables, "fast": self.config.fast})

    def finish_bundle(self):
        self.tally.flush()

    def teardown(self):
        self.extractor.close()

    def process(self, url: str):
        records_in = Metrics.counter(STAGE, "records_in")
        for kind, row in read_records(url, self.read, STAGE):
            records_in.inc()  # a broken record is a record in too: it is counted as rejected
            self.tally.add()
            if kind == "record":
                Metrics.counter(STAGE, f"read_{row['format']}").inc()
                yield from self.extract(row)
            else:
                Metrics.counter(STAGE, f"rejected_{row['reason']}").inc()
                yield pvalue.TaggedOutput("rejected", row)

    def extract(self, rec: dict):
        url = rec["url"]
        source = f"{rec['source_file'].rsplit('/', 1)[-1]}:{rec['source_offset']}"
        # A JSONL/Parquet record's own id is kept; an archive's record ids are random UUIDs
        # per crawl, so captures are named by URL and payload, the same in every crawl.
        own_id = rec["id"] if READERS[rec["format"]].keeps_ids else None
        doc_id = own_id or document_id(url, rec["digest"], source)

        def reject(reason, detail=None, record_id=None):
            Metrics.counter(STAGE, f"rejected_{reason}").inc()
            return pvalue.TaggedOutput("rejected", rejected_record(
                STAGE, reason, url=rec["url"], id=record_id or rec.get("id"), detail=detail,
                source_file=rec["source_file"], source_offset=rec["source_offset"]))

        if self.read.holdout:
            held = held_out(doc_id, self.read.holdout)
            if held and self.read.holdout_side == "exclude":
                yield reject("held_out", f"in the held-out {self.read.holdout:.1%} by id hash",
                             doc_id)
                return
            if not held and self.read.holdout_side == "only":
                yield reject("not_held_out", f"outside the held-out {self.read.holdout:.1%}",
                             doc_id)
                return
        if rec["kind"] == "text":
            fields = {"text": (rec["text"] or "").strip(), "title": rec.get("title")}
        else:
            if rec["record_type"] == "revisit" and rec["status"] == 304:
                yield reject("unchanged", "304 Not Modified to a refresh crawl's conditional "
                             "request: the earlier snapshot holds this page")
                return
            if rec["record_type"] == "revisit":
                yield reject("revisit", "revisit record: no payload")
                return
            if rec["status"] is not None and rec["status"] != 200:
                yield reject(f"http_{rec['status']}")
                return
            if not looks_like_html(rec["content_type"], rec["body"] or b""):
                yield reject("not_html", rec["content_type"] or "no content type")
                return
            try:
                fields = self.extractor.extract(rec["body"], rec["url"], rec["content_type"])
            except ExtractTimeout:
                yield reject("extract_timeout", f"over {self.config.timeout_s:g} s")
                return
            except RuntimeError as err:  # a broken page must not stop the job
                yield reject("extract_error", str(err))
                return
            if fields is None:
                fields = {"text": ""}
        if not fields["text"]:
            yield reject("no_text")
            return
        yield empty_document(
            id=doc_id, url=url,
            host=_host(url), fetch_time=parse_fetch_time(rec["fetch_time"]),
            source_file=rec["source_file"], source_offset=rec["source_offset"],
            source_format=rec["format"], snapshot=self.snapshot, title=fields.get("title"),
            author=fields.get("author"), date=fields.get("date"),
            sitename=fields.get("sitename"), text=fields["text"], metadata=rec.get("metadata"))


class ExtractDocuments(beam.PTransform):
    """Input file URLs -> `StageOutput`: their documents, and a reject for every other record."""

    def __init__(self, config: ExtractConfig, snapshot: str, read: ReadConfig | None = None,
                 progress: str | None = None):
        super().__init__()
        self.config, self.snapshot, self.read = config, snapshot, read or ReadConfig()
        self.progress = progress

    def expand(self, files):
        out = (files
               | "SpreadFiles" >> beam.Reshuffle()  # file names, not pages, go to the workers
               | "ReadExtract" >> beam.ParDo(ExtractFiles(self.config, self.read, self.snapshot,
                                                         self.progress))
               .with_outputs("rejected", main="documents"))
        return StageOutput(out.documents, out.rejected)


def build_extract(stage: StageDir, input_urls: list[str], config: ExtractConfig,
                  read: ReadConfig, snapshot: str, num_shards: int,
                  engine: EngineConfig, progress: str | None = None) -> dict[str, int]:
    p = make_pipeline(engine)
    out = (p | "Files" >> beam.Create(sorted(input_urls))
           | "Extract" >> ExtractDocuments(config, snapshot, read, progress))
    StageTables(stage, engine).write(out, num_shards=num_shards)
    return run_pipeline(p)


def describe_inputs(urls: list[str], read: ReadConfig) -> list[dict]:
    """Every input pinned by its content hash and format (InputError for one no reader reads)."""
    return [file_input(url, format=detect_reader(url, read).name) for url in urls]


def plan(ctx: Context) -> Job:
    config = ctx.config
    return Job(inputs=describe_inputs(ctx.inputs, config.read),
               build=lambda st, pr: build_extract(
                   st, ctx.inputs, config.extract, config.read, config.snapshot,
                   config.shard.num_shards, config.engine, progress=pr.folder))
