"""Input readers at the extract boundary: one reader per format, one row shape for all.

    files = expand_inputs(["crawl/", "more/*.jsonl.zst", "s3://bucket/cc.warc.gz"])
    for url in files:
        detect_reader(url, config)          # InputError before a job starts, if unreadable
    for kind, row in read_records(url, config, stage="extract"):
        ...                                 # kind: "record" (see RECORD_KEYS) or "rejected"

Formats: WARC, ARC and Common Crawl WET (`archive.py`), JSON Lines plain/gzip/zstd (`jsonl.py`),
Parquet (`parquet.py`); detection by content (`detect.py`). A new format is one new `Reader`
subclass (its name, extensions, `sniff`, `check` and `read`) and one entry in `READERS`: the
detection, the folder listing, the error messages and the extract stage read what it declares.
"""

from pipelines.readers.archive import ArchiveReader
from pipelines.readers.base import RECORD_KEYS, InputError, Reader
from pipelines.readers.detect import READERS, detect_reader, expand_inputs, read_records
from pipelines.readers.jsonl import JsonlReader
from pipelines.readers.parquet import ParquetReader

__all__ = ["RECORD_KEYS", "READERS", "ArchiveReader", "InputError", "JsonlReader",
           "ParquetReader", "Reader", "detect_reader", "expand_inputs", "read_records"]
