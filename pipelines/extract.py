"""Extract stage: WARC records -> documents with the main text of each HTML page (trafilatura).

Each page record yields a document or a rejected row: `http_<status>` for non-200 responses,
`revisit` for revisit records (no payload), `not_html` for other content types, `no_text` when
trafilatura finds no main text, `extract_error` when it fails, `corrupt_record` for broken WARC.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from urllib.parse import urlsplit

import apache_beam as beam
import trafilatura
from apache_beam import pvalue

from pipelines.engine import make_pipeline, run_pipeline
from pipelines.stage import DATA_DIR, REJECTED_DIR, StageDir
from pipelines.tables import WriteTable, count_in, write_rejected
from pipelines.warc import read_warc_records
from schemas.config import EngineConfig, ExtractConfig
from schemas.document import DOCUMENT_SCHEMA, empty_document, rejected_record

STAGE = "extract"


def document_id(url: str, content_digest: str) -> str:
    """Stable id: the URL and the payload digest (two different captures of a URL differ)."""
    return hashlib.sha256(f"{url}\n{content_digest}".encode()).hexdigest()[:32]


def parse_warc_date(value: str | None):
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def looks_like_html(content_type: str, body: bytes) -> bool:
    if content_type:
        return "html" in content_type.lower()
    head = body[:512].lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


class ReadWarc(beam.DoFn):
    """WARC file URL -> page records; broken records to the `rejected` output."""

    def process(self, url: str):
        for kind, row in read_warc_records(url, STAGE):
            yield row if kind == "page" else pvalue.TaggedOutput("rejected", row)


class ExtractText(beam.DoFn):
    def __init__(self, config: ExtractConfig, snapshot: str):
        self.config, self.snapshot = config, snapshot

    def setup(self):
        logging.getLogger("trafilatura").setLevel(logging.ERROR)
        logging.getLogger("htmldate").setLevel(logging.ERROR)

    def process(self, page: dict):
        def reject(reason, detail=None):
            return pvalue.TaggedOutput("rejected", rejected_record(
                STAGE, reason, url=page["url"], detail=detail, source_file=page["source_file"],
                source_offset=page["source_offset"]))

        if page["record_type"] == "revisit":
            yield reject("revisit", "revisit record: no payload")
            return
        if page["status"] != 200:
            yield reject(f"http_{page['status']}")
            return
        if not looks_like_html(page["content_type"], page["body"]):
            yield reject("not_html", page["content_type"] or "no content type")
            return
        try:
            result = trafilatura.bare_extraction(
                page["body"], url=page["url"], with_metadata=True,
                favor_precision=self.config.favor_precision, include_comments=False,
                include_tables=self.config.include_tables)
        except Exception as err:  # a broken page must not stop the job
            yield reject("extract_error", f"{type(err).__name__}: {err}")
            return
        text = (result.text or "").strip() if result is not None else ""
        if not text:
            yield reject("no_text")
            return
        url = page["url"]
        yield empty_document(
            id=document_id(url, page["digest"]), url=url, host=urlsplit(url).hostname,
            fetch_time=parse_warc_date(page["fetch_time"]), source_file=page["source_file"],
            source_offset=page["source_offset"], snapshot=self.snapshot,
            title=result.title, text=text)


class ExtractDocuments(beam.PTransform):
    """WARC file URLs -> documents (main output) and `rejected`."""

    def __init__(self, config: ExtractConfig, snapshot: str):
        super().__init__()
        self.config, self.snapshot = config, snapshot

    def expand(self, files):
        read = files | "ReadWarc" >> beam.ParDo(ReadWarc()).with_outputs("rejected", main="pages")
        # A broken record is a record in too: it is accounted for as rejected.
        broken = read.rejected | "CountBroken" >> count_in(STAGE)
        pages = (read.pages
                 | "Spread" >> beam.Reshuffle()
                 | "CountIn" >> count_in(STAGE))
        out = pages | "Extract" >> beam.ParDo(ExtractText(self.config, self.snapshot)) \
            .with_outputs("rejected", main="documents")
        rejected = (broken, out.rejected) | "AllRejected" >> beam.Flatten()
        return {"documents": out.documents, "rejected": rejected}


def build_extract(stage: StageDir, warc_urls: list[str], config: ExtractConfig, snapshot: str,
                  num_shards: int, engine: EngineConfig) -> dict[str, int]:
    p = make_pipeline(engine)
    out = (p | "Files" >> beam.Create(sorted(warc_urls))
           | "Extract" >> ExtractDocuments(config, snapshot))
    out["documents"] | "WriteDocs" >> WriteTable(stage.url(DATA_DIR), DOCUMENT_SCHEMA,
                                                 num_shards=num_shards)
    write_rejected(out["rejected"], stage.url(REJECTED_DIR))
    return run_pipeline(p)
