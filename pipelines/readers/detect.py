"""Which reader reads a file, and which files a list of inputs names.

The format is chosen by content, because extensions lie (`.json.gz` holding JSON Lines, a WARC
saved as `.gz`): gzip (`1f 8b`) and zstd (`28 b5 2f fd`) are looked into, then `PAR1` is Parquet,
`WARC/` is WARC (or WET when its first content record is a `conversion`), `filedesc://` is ARC and
`{` is JSON Lines. The extension only breaks ties: WARC vs WET, and an empty file. Anything else is
an `InputError` that says what the file starts with.

Inputs are local paths or fsspec URLs (`file://`, `memory://`, `s3://`, ...), given as files,
folders (searched recursively; hidden and `_`-prefixed files such as `_SUCCESS` are skipped, and so
are files of no known format) or glob patterns. URLs stay URLs: another process opens them with
`fsspec.open`.
"""

from __future__ import annotations

import os
import zlib
from typing import Iterator

import fsspec
import zstandard

from pipelines.readers.archive import ArchiveReader
from pipelines.readers.base import InputError, Item, Reader
from pipelines.readers.jsonl import ZSTD_MAGIC, JsonlReader
from pipelines.readers.parquet import ParquetReader
from schemas.config import ReadConfig

# Every format: a new one is one `Reader` subclass (in its own module) and one entry here.
READERS: dict[str, Reader] = {reader.name: reader for reader in (
    ArchiveReader("warc"), ArchiveReader("arc"), ArchiveReader("wet"), JsonlReader(),
    ParquetReader())}
EXTENSIONS = {ext: r.name for r in READERS.values() for ext in r.extensions}
COMPRESSIONS = (".gz", ".zst", ".zstd")
KNOWN = "/".join(r.label for r in READERS.values())


def format_by_extension(url: str) -> str | None:
    name = url.rsplit("/", 1)[-1].lower()
    for suffix in COMPRESSIONS:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return EXTENSIONS.get(os.path.splitext(name)[1])


def _head(f, n: int = 64) -> tuple[bytes, str]:
    """The first n content bytes (decompressed) and the compression found."""
    start = f.read(4)
    f.seek(0)
    if start[:2] == b"\x1f\x8b":
        dobj, out = zlib.decompressobj(31), b""
        try:
            while len(out) < n and not dobj.eof and (data := f.read(1 << 16)):
                out += dobj.decompress(data, n - len(out))
        except zlib.error as err:
            raise InputError(f"broken gzip data ({err})") from None
        return out, "gzip"
    if start == ZSTD_MAGIC:
        try:
            with zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as r:
                return r.read(n), "zstd"
        except zstandard.ZstdError as err:
            raise InputError(f"broken zstd data ({err})") from None
    return f.read(n), ""


def sniff(url: str) -> tuple[str | None, bytes, str]:
    """(format family or None, first content bytes, compression) of a file, by its content."""
    with fsspec.open(url, "rb") as f:
        head, compression = _head(f)
    for reader in READERS.values():
        if reader.sniff(head, compression):
            return reader.name, head, compression
    return None, head, compression


def detect_reader(url: str, config: ReadConfig | None = None) -> Reader:
    """The reader for `url`, after checking that its first record parses; with a config, also
    that the fields it names can exist (a Parquet text column). InputError otherwise."""
    try:
        family, head, compression = sniff(url)
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        if compression == "zstd" and text.startswith((b"WARC/", b"filedesc://")):
            raise InputError(f"{url}: a zstd-compressed web archive (.warc.zst), which is not "
                             f"read yet; decompress it (zstd -d) or recompress it with gzip")
        if family is None:
            by_name = format_by_extension(url)
            if head.strip() or by_name is None:
                what = f"{compression}-compressed data " if compression else ""
                raise InputError(f"{url}: not a {KNOWN} file (it starts with {what}"
                                 f"{head[:16]!r})")
            family = by_name  # an empty file: as its name says, zero records
            if READERS[family].empty_is_zero_records:
                return READERS[family]
        return READERS[family].resolve(url, config)
    except InputError as err:
        message = str(err)
        raise InputError(message if message.startswith(url) else f"{url}: {message}") from None
    except FileNotFoundError:
        raise InputError(f"{url}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{url}: is a folder, not a file") from None
    except PermissionError:
        raise InputError(f"{url}: permission denied") from None
    except (OSError, ValueError, ImportError) as err:  # also an fsspec protocol not installed
        raise InputError(f"{url}: cannot be read ({type(err).__name__}: {err})") from None


def read_records(url: str, config: ReadConfig, stage: str) -> Iterator[Item]:
    """Detect the format of `url`, then read it: ("record", row) and ("rejected", row)."""
    return detect_reader(url).read(url, config, stage)


# -- inputs -------------------------------------------------------------------------------------


def _skipped(path: str, root: str) -> bool:
    """Hidden or underscore files (`.git`, `_SUCCESS`) under `root`, or as a bare name."""
    rel = path[len(root):] if root and path.startswith(root) else path.rsplit("/", 1)[-1]
    return any(part.startswith((".", "_")) for part in rel.strip("/").split("/"))


def _known(path: str, url: str) -> bool:
    if format_by_extension(path):
        return True
    try:
        return sniff(url)[0] is not None
    except (InputError, OSError):
        return False


def expand_inputs(paths: list[str]) -> list[str]:
    """Files named by `paths`: sorted, unique, openable by `fsspec.open` in any process. A file
    named on its own is kept whatever it holds (`detect_reader` judges it); files found in a
    folder or by a glob are kept only when they are of a known format. InputError for a missing
    path, a folder or glob with no input in it, an unreadable file."""
    found: set[str] = set()
    for given in paths:
        is_url = "://" in given
        try:
            fs, path = fsspec.core.url_to_fs(given if is_url else os.path.abspath(given))
        except (ValueError, ImportError) as err:  # an unknown or uninstalled protocol
            raise InputError(f"{given}: cannot be opened ({err})") from None

        def name(p: str) -> str:
            return fs.unstrip_protocol(p) if is_url else p

        mine: set[str] = set()
        if any(c in path for c in "*?["):
            matches = fs.glob(path)
            if not matches:
                raise InputError(f"{given}: matches no file")
            for match in matches:
                if fs.isdir(match):
                    mine |= _folder(fs, match, name)
                elif not _skipped(match, "") and _known(match, name(match)):
                    mine.add(name(match))
        elif not fs.exists(path):
            raise InputError(f"{given}: no such file or folder")
        elif fs.isdir(path):
            mine = _folder(fs, path, name)
        else:
            _readable(fs, path, given)
            mine.add(name(path))
        if not mine:
            raise InputError(f"{given}: holds no {KNOWN} file")
        found |= mine
    return sorted(found)


def _folder(fs, root: str, name) -> set[str]:
    return {name(p) for p in fs.find(root) if not _skipped(p, root) and _known(p, name(p))}


def _readable(fs, path: str, given: str) -> None:
    try:
        with fs.open(path, "rb") as f:
            f.read(1)
    except PermissionError:
        raise InputError(f"{given}: permission denied") from None
    except OSError as err:
        raise InputError(f"{given}: cannot be read ({err})") from None
