"""Where a quality classifier's examples come from (`corpus quality-model train`): files of
texts, and a seeded sample of a built corpus (the random crawl DCLM trains against)."""

from __future__ import annotations

import hashlib
import heapq
import os
import re
from typing import Iterator

import fsspec

from pipelines.core.tables import read_parquet_rows
from pipelines.filters.quality_model import TrainingError
from pipelines.readers import InputError, read_records
from pipelines.readers.detect import sniff
from schemas.config import ReadConfig

BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")  # what separates two texts of a plain text file


def file_texts(path: str, text_field: str = "text") -> Iterator[str]:
    """The texts of a file of examples, by its content: JSON Lines (plain, gzip, zstd) and
    Parquet through the readers (`text_field`; unreadable records skipped, as the extract stage
    rejects them), anything else read as UTF-8 plain text (gzip or zstd too) whose blocks
    between blank lines are one text each (a paragraph, a page: a text may span lines). A web
    archive, or a file that is neither, is a `TrainingError`."""
    if not os.path.isfile(path):
        raise TrainingError(f"{path}: no such file")
    try:
        family, _, compression = sniff(path)
    except InputError as err:
        raise TrainingError(f"{path}: {err}") from None
    if family in ("jsonl", "parquet"):
        try:
            for kind, row in read_records(path, ReadConfig(text_field=text_field), "quality"):
                if kind == "record":
                    yield row["text"]
        except InputError as err:
            raise TrainingError(str(err)) from None
        return
    if family is not None:
        raise TrainingError(f"{path} is a {family} file: give texts as JSON Lines, Parquet or "
                            f"plain text (extract a web archive with `corpus build` first)")
    try:
        with fsspec.open(path, "rt", encoding="utf-8", compression=compression or None) as f:
            text = f.read()
    except (UnicodeDecodeError, OSError, EOFError) as err:
        raise TrainingError(f"{path}: not UTF-8 plain text ({err})") from None
    yield from (block.strip() for block in BLANK_LINES.split(text) if block.strip())


def sample_texts(urls: list[str], count: int, seed: int = 0) -> list[str]:
    """`count` texts of the document tables `urls` (a built corpus's shards): those of smallest
    seeded hash of their id, the same ones whatever the order of the files; read a batch at a
    time, holding at most `count` texts."""
    best: list[tuple[int, str, str]] = []  # a heap of (-hash, id, text): the largest on top
    for url in urls:
        for row in read_parquet_rows(url, columns=["id", "text"]):
            if not row["text"]:
                continue
            digest = hashlib.blake2b(f"{seed}\0{row['id']}".encode("utf-8", "surrogatepass"),
                                     digest_size=8).digest()
            entry = (-int.from_bytes(digest, "big"), row["id"] or "", row["text"])
            if len(best) < count:
                heapq.heappush(best, entry)
            elif entry > best[0]:
                heapq.heapreplace(best, entry)
    return [text for _, _, text in sorted(best, reverse=True)]
