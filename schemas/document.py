"""The Arrow schemas of the document table and of the rejected-records table.

Every stage reads and writes documents with `DOCUMENT_SCHEMA`; a stage fills the columns it owns
and leaves the others as they came (null until a stage sets them). Rejected records of every stage
share `REJECTED_SCHEMA`, so one query over all `rejected/` folders explains every drop.
"""

from __future__ import annotations

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        # identity and provenance
        pa.field("id", pa.string(), nullable=False),  # hash of URL and payload, or the source's id
        pa.field("url", pa.string()),  # null for text records that came without one
        pa.field("host", pa.string()),
        pa.field("fetch_time", pa.timestamp("us", tz="UTC")),
        pa.field("source_file", pa.string()),  # input file the record came from
        pa.field("source_offset", pa.int64()),  # WARC/ARC: byte offset; JSONL: line; Parquet: row
        pa.field("source_format", pa.string()),  # warc, arc, wet, jsonl, parquet
        pa.field("snapshot", pa.string()),  # name of the crawl / build the document belongs to
        # content
        pa.field("title", pa.string()),
        pa.field("author", pa.string()),
        pa.field("date", pa.string()),  # publication date as found (ISO 8601 when extracted)
        pa.field("sitename", pa.string()),
        pa.field("text", pa.string()),
        pa.field("metadata", pa.string()),  # JSON object: the source record's other fields
        # language identification (fastText lid.176)
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        # quality signals
        pa.field("n_chars", pa.int64()),
        pa.field("n_words", pa.int64()),
        pa.field("alpha_ratio", pa.float32()),
        pa.field("pii_replaced", pa.int32()),  # PII spans replaced by placeholders
        # quality model name -> probability of its positive label; null when no model scored
        pa.field("quality_scores", pa.map_(pa.string(), pa.float32())),
        # duplicate information
        pa.field("text_hash", pa.string()),  # sha256 of the normalized text
        pa.field("dup_cluster", pa.string()),  # id of the document kept for this cluster
        pa.field("dup_count", pa.int32()),  # how many documents the cluster had (1 = unique)
    ]
)

DOCUMENT_COLUMNS = tuple(DOCUMENT_SCHEMA.names)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("id", pa.string()),
        pa.field("detail", pa.string()),  # free text: the error, the duplicate's keeper, a score
        pa.field("related_id", pa.string()),  # a duplicate: the id of the document kept instead
        pa.field("similarity", pa.float32()),  # a near duplicate: its similarity to related_id
        pa.field("source_file", pa.string()),
        pa.field("source_offset", pa.int64()),
        pa.field("text_snippet", pa.string()),  # first characters of the text, to inspect
    ]
)

REJECTED_COLUMNS = tuple(REJECTED_SCHEMA.names)

SNIPPET_CHARS = 300


def empty_document(**values) -> dict:
    """A document row with every column present (None where not given)."""
    unknown = set(values) - set(DOCUMENT_COLUMNS)
    if unknown:
        raise KeyError(f"not document columns: {sorted(unknown)}")
    row = dict.fromkeys(DOCUMENT_COLUMNS)
    row.update(values)
    return row


def rejected_record(stage: str, reason: str, *, url=None, id=None, detail=None,
                    source_file=None, source_offset=None, text=None, related_id=None,
                    similarity=None) -> dict:
    """A row of the rejected table; `text` is cut to a snippet."""
    return {
        "stage": stage,
        "reason": reason,
        "url": url,
        "id": id,
        "detail": None if detail is None else str(detail)[:1000],
        "related_id": related_id,
        "similarity": similarity,
        "source_file": source_file,
        "source_offset": source_offset,
        "text_snippet": None if text is None else text[:SNIPPET_CHARS],
    }


def reject_document(stage: str, reason: str, doc: dict, detail=None, related_id=None) -> dict:
    """The rejected-table row for a document dropped by `stage`."""
    return rejected_record(stage, reason, url=doc.get("url"), id=doc.get("id"), detail=detail,
                           source_file=doc.get("source_file"),
                           source_offset=doc.get("source_offset"), text=doc.get("text"),
                           related_id=related_id)
