"""Reading WARC (and ARC) files into response rows, with broken records counted, not fatal.

A file that cannot be opened at all is a user error and is caught before a job starts
(`check_warc_file`); a record that breaks in the middle of a good file becomes a rejected row with
reason `corrupt_record`, and the rest of that file is skipped (a gzip stream cannot be resumed).
"""

from __future__ import annotations

import gzip
import hashlib

import fsspec
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from schemas.document import rejected_record

# Records that carry a captured page; request, warcinfo and metadata records describe captures.
PAGE_RECORD_TYPES = {"response", "resource", "revisit"}


class WarcFileError(ValueError):
    """The file is not a readable WARC/ARC file."""


def _first_bytes(f, url: str, n: int = 16) -> bytes:
    head = f.read(2)
    f.seek(0)
    if head == b"\x1f\x8b":  # gzip: look at the start of the first member's content
        try:
            return gzip.GzipFile(fileobj=f).read(n)
        except Exception as err:  # BadGzipFile, zlib.error, EOFError: all mean "broken"
            raise WarcFileError(f"{url}: not a readable WARC/ARC file: broken gzip "
                                f"({type(err).__name__}: {err})") from None
    return f.read(n)


def check_warc_file(url: str) -> None:
    """Raise WarcFileError unless the file starts like WARC or ARC and its first record parses."""
    try:
        with fsspec.open(url, "rb") as f:
            start = _first_bytes(f, url)
            if not (start.startswith(b"WARC/") or start.startswith(b"filedesc://")):
                raise WarcFileError(f"{url}: not a readable WARC/ARC file (it starts with "
                                    f"{start[:12]!r}, not 'WARC/' or an ARC 'filedesc://')")
            f.seek(0)
            for _record in ArchiveIterator(f, arc2warc=True):
                return
    except FileNotFoundError:
        raise WarcFileError(f"{url}: no such file") from None
    except PermissionError:
        raise WarcFileError(f"{url}: permission denied") from None
    except WarcFileError:
        raise
    except (ArchiveLoadFailed, OSError, EOFError, ValueError, gzip.BadGzipFile) as err:
        raise WarcFileError(f"{url}: not a readable WARC/ARC file ({err})") from None
    raise WarcFileError(f"{url}: holds no WARC records")


def read_warc_records(url: str, stage: str):
    """Yield ("page", row) for each page record and ("rejected", row) for a broken one."""
    offset = 0
    try:
        with fsspec.open(url, "rb") as f:
            records = ArchiveIterator(f, arc2warc=True)
            for record in records:
                if record.rec_type not in PAGE_RECORD_TYPES:
                    continue
                headers = record.rec_headers
                target = headers.get_header("WARC-Target-URI")
                http = record.http_headers
                body = record.content_stream().read()
                # Asked before the payload is read, warcio loses the payload: ask after.
                offset = records.get_record_offset()
                yield "page", {
                    "url": target,
                    "record_type": record.rec_type,
                    "fetch_time": headers.get_header("WARC-Date"),
                    "status": int(http.get_statuscode() or 0) if http else 200,
                    "content_type": (http.get_header("Content-Type") if http else
                                     headers.get_header("Content-Type")) or "",
                    "body": body,
                    "source_file": url,
                    "source_offset": offset,
                    "digest": hashlib.sha256(body).hexdigest(),
                }
    except Exception as err:  # warcio raises many kinds on broken input; none may stop the job
        yield "rejected", rejected_record(
            stage, "corrupt_record", source_file=url, source_offset=offset,
            detail=f"{type(err).__name__}: {err}; rest of file skipped")
