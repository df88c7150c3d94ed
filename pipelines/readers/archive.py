"""WARC, ARC and WET files -> record rows, where one broken record costs one record.

warcio parses each record's headers (`ArcWarcRecordLoader`, ARC converted to WARC); the framing
between records is done here, because warcio's `ArchiveIterator` stops at the first record it
cannot parse and turns a bad Content-Length into a silently truncated or merged record. Here:

- a record whose headers or conversion fail is one `corrupt_record` reject, and reading goes on;
- a record whose Content-Length does not end at a record boundary (blank line, then the next
  record or the end) is a reject, and reading resumes at the next record line after its own
  header: in a gzip-per-record file the first line of a later gzip member, otherwise the next
  `WARC/1.x` (or ARC) line, also one glued to a cut-off line. When a blank line follows but junk
  comes next, WARC-Block-Digest (if present) says whether the record or the junk is to blame;
- bytes where a record line should be are one reject, then the same resynchronisation;
- a corrupt or truncated gzip member is one reject, and reading resumes at the next member; only
  when none follows (a broken whole-file gzip stream) does the file end early, and the reject says
  how many bytes were left unread. zlib checks a member's CRC at its end, so in a whole-file gzip,
  damage that still inflates is only found there, after the records before it were yielded;
- a response whose block has no HTTP header section (it starts with `<!DOCTYPE` or a blank line,
  as in some Wayback exports) is a page with the whole block as body and `status=None`;
- request, warcinfo, metadata and continuation records are skipped, not counted; a record of an
  unknown type is a reject.

`source_offset` is the compressed offset of the record's gzip member when each record has its own
member (seekable, as warcio reports it), else the record's offset in the decompressed stream.
"""

from __future__ import annotations

from typing import Iterator

import fsspec
from warcio.limitreader import LimitReader
from warcio.recordloader import ArcWarcRecordLoader

from pipelines.readers.base import InputError, Item, Reader, reject, text_start
from pipelines.readers.streams import CHUNK, Cursor, StreamBreak
from pipelines.readers.warc_record import (
    COUNTED_TYPES,
    OTHER_TYPES,
    PAGE_TYPES,
    TEXT_TYPES,
    WARC_LINE,
    WARC_TAIL,
    BadRecord,
    CutShort,
    HeaderBudget,
    contains_record_line,
    digest_matches,
    is_arc_line,
    record_row,
    record_start,
)
from schemas.config import ReadConfig


class _Pass:
    """One pass over one archive file."""

    def __init__(self, f, url: str, name: str, config: ReadConfig, stage: str):
        self.cur = Cursor(f)
        self.cur.member_lines = True
        self.url, self.name, self.config, self.stage = url, name, config, stage
        self.loader = ArcWarcRecordLoader(verify_http=False, arc2warc=True)
        self.arc = None  # the file is ARC: known from its first record line
        self.per_member = self.cur.gzip  # every record so far began its own gzip member
        self.last_member = None  # member of the last record start, for offsets
        self.current = None  # (offset, url) of the record being read, for a break's reject
        self.start = 0  # logical position of the record (or bad bytes) being read
        self.rejected_member = None  # gzip member of the last reject: one damage, one reject
        self.last_start = -1

    def reject(self, reason, offset, detail, url=None) -> Item:
        return reject(self.stage, reason, self.url, offset, detail, url=url)

    def items(self) -> Iterator[Item]:
        for item in self._items():
            if item[0] == "rejected":
                self.rejected_member = self.cur.member_at(self.start)
            yield item

    def _items(self) -> Iterator[Item]:
        cur = self.cur
        while True:
            try:
                self.current = None
                line = self.next_line()
                if not line:
                    return
                start = self.start = cur.tell()
                if start <= self.last_start:  # never expected: a guard against looping forever
                    cur.skip(len(line))
                    yield self.reject("corrupt_record", start, f"unreadable data at offset {start}")
                    continue
                self.last_start = start
                cur.mark(start)
                if self.arc is None:
                    self.arc = is_arc_line(line)
                skip = record_start(line, self.arc)
                if skip is None:
                    yield self.reject("corrupt_record", self.offset(start, page=False),
                                      f"no record header at offset {start} (found "
                                      f"{line[:40]!r}); skipped to the next record")
                    self.resync(start)
                    continue
                cur.skip(skip)  # white space glued before a WARC line
                start = self.start = cur.tell()
                yield from self.record(start, cur.readline())
            except StreamBreak as brk:
                yield from self.broken(brk)  # then the loop goes on, or finds the end

    def next_line(self) -> bytes:
        """The next non-blank line, left unread (b"" at the end)."""
        while (line := self.cur.peek_line()) and not line.strip():
            self.cur.skip(len(line))
        return line

    def broken(self, brk: StreamBreak) -> Iterator[Item]:
        cur = self.cur
        counted = self.per_member and brk.member == self.rejected_member
        resumed = cur.recover(brk)
        offset, url = self.current or (brk.member, None)
        if resumed is None:
            yield self.reject("corrupt_record", offset, f"{brk}; no gzip member follows: the "
                              f"rest of the file ({cur.size - brk.offset} bytes) is unread",
                              url=url)
            return
        self.last_member = None
        if not counted:  # else this member's damage was already one reject
            yield self.reject("corrupt_record", offset, f"{brk}; resumed at the gzip member at "
                              f"offset {resumed}", url=url)

    def offset(self, start: int, page: bool = True) -> int:
        member = self.cur.member_at(start)
        if member is None:
            return start
        if member != self.last_member:
            self.last_member = member
            return member
        if page:
            self.per_member = False
        return start

    def record(self, start: int, line: bytes) -> Iterator[Item]:
        cur, after_line = self.cur, start + len(line)
        offset = self.offset(start)
        try:
            rec = self.loader.parse_record_stream(
                HeaderBudget(cur, cur), statusline=line, no_record_parse=True,
                known_format="arc" if self.arc and not WARC_LINE.match(line) else "warc")
        except CutShort as cut:
            if cut.record_type() not in OTHER_TYPES:
                yield self.reject("corrupt_record", offset, f"record at offset {offset}: {cut}")
            cur.seek(cut.pos)
            return
        except StreamBreak:
            raise
        except Exception as err:  # warcio raises many kinds on broken headers
            yield self.reject("corrupt_record", offset, f"unreadable record header at offset "
                              f"{offset}: {type(err).__name__}: {err}; skipped to the next record")
            self.resync(after_line)
            return
        target = rec.rec_headers.get_header("WARC-Target-URI")
        counted = rec.rec_type not in OTHER_TYPES

        def fail(detail: str, reason: str = "corrupt_record") -> Iterator[Item]:
            if counted:
                yield self.reject(reason, offset, f"{detail} (record at offset {offset})",
                                  url=target)

        self.current = (offset, target)
        length = (rec.rec_headers.get_header("Content-Length") or "").strip()
        if not isinstance(rec.raw_stream, LimitReader) or not length.isdigit():
            yield from fail(f"invalid Content-Length {length!r}; skipped to the next record")
            return self.resync(cur.tell())
        block, block_start = rec.raw_stream, cur.tell()
        block.stream = cur  # past the header budget: the block is read directly
        outcome: list[Item] = []
        if rec.rec_type not in COUNTED_TYPES:
            outcome = list(fail(f"unknown record type {rec.rec_type!r}"))
        elif counted:
            try:
                outcome = [("record", record_row(rec, self.name, self.arc,
                                                 self.config.max_record_bytes, self.url, offset))]
            except BadRecord as bad:
                outcome = list(fail(str(bad), bad.reason))
            except StreamBreak:
                raise
            except Exception as err:  # one record's conversion must never cost another
                outcome = list(fail(f"{type(err).__name__}: {err}"))
        block.limit -= cur.skip(block.limit)
        if block.limit > 0:  # a cut-off last record, or a Content-Length that swallowed others
            yield from fail(f"truncated: the data ends {block.limit} bytes short of "
                            f"Content-Length {length}")
            return self.resync(after_line)
        try:
            fits = self.fits(rec, start, block_start)
        except StreamBreak as brk:
            if brk.member != cur.member_at(start):  # the break is in what follows: keep this
                self.current = None
                yield from outcome
            raise  # else this record's own member failed its checksum: it is the reject
        if fits:
            yield from outcome
            return
        yield from fail(f"Content-Length {length} does not end at a record boundary; "
                        f"skipped to the next record")
        self.resync(after_line)

    def fits(self, rec, start: int, block_start: int) -> bool:
        """Does the block end where the record ends? A blank line (or the end) must follow, then
        the next record (or the end); blank lines are consumed, the next line is not."""
        cur, end = self.cur, self.cur.tell()
        line = cur.peek_line(256)
        separated = not line or not line.strip()
        if line.startswith(b"\n") and cur.prev_byte() == b"\r":
            separated = False  # the block ends inside a CRLF: its length is off
        line = self.next_line()
        followed = not line or record_start(line, self.arc) is not None
        same_member = bool(line) and cur.gzip and cur.member_at(cur.tell()) == cur.member_at(start)
        if followed and same_member:
            self.per_member = False  # several records share a gzip member (whole-file gzip)
        elif same_member and self.per_member and cur.members_seen > 1:
            return False  # junk inside the record's own member: the record's fault
        if followed or not separated:
            return followed
        # a blank line, then junk: is this block whole (the junk is a broken record of its own),
        # or did a wrong Content-Length end it at a blank line inside it, or past the next
        # record's first line? WARC-Block-Digest says; without one, a record line inside the
        # block condemns it.
        declared = rec.rec_headers.get_header("WARC-Block-Digest")
        after = cur.tell()
        cur.seek(block_start)
        chunks = self._chunks(end - block_start)
        if declared:
            whole = digest_matches(declared, chunks) is not False
        else:
            whole = not contains_record_line(chunks)
        cur.seek(after)
        return whole

    def _chunks(self, n: int) -> Iterator[bytes]:
        while n > 0 and (chunk := self.cur.read(min(n, CHUNK))):
            n -= len(chunk)
            yield chunk

    def resync(self, pos: int) -> None:
        """Leave the cursor at the next record line from `pos` on (or at the end), also one glued
        to the end of a cut-off line. In a gzip-per-record file only the first line of a later
        member counts, so a WARC quoted inside a payload is not mistaken for a record."""
        cur = self.cur
        self.current = None  # a break from here on is not the rejected record's
        cur.seek(pos)
        seen = cur.member_at(max(pos - 1, 0))
        while line := cur.peek_line():
            here = cur.tell()
            member = cur.member_at(here)
            if line.strip():
                if self.per_member and cur.members_seen > 1:  # one gzip member is no evidence
                    if member != seen and record_start(line, self.arc) == 0:
                        return
                    seen = member
                elif record_start(line, self.arc) == 0 and here > pos - 1:
                    return
                elif (tail := WARC_TAIL.search(line)) and here + tail.start() > pos:
                    cur.skip(tail.start())
                    return
            cur.skip(len(line))


_MAGIC = {"warc": b"WARC/", "arc": b"filedesc://", "wet": None}  # a WET is a WARC, probed


class ArchiveReader(Reader):
    """WARC, ARC and WET files: one class, three names (the row's `format`)."""

    def __init__(self, name: str):
        self.name, self.label = name, name.upper()
        self.extensions = (f".{name}",)

    def sniff(self, head: bytes, compression: str) -> bool:
        magic = _MAGIC[self.name]
        return magic is not None and text_start(head).startswith(magic) and compression != "zstd"

    def resolve(self, url: str, config: ReadConfig | None = None) -> Reader:
        found = probe_archive(url)  # it parsed the first records
        return self if found == self.name else ArchiveReader(found)

    def read(self, url: str, config: ReadConfig, stage: str) -> Iterator[Item]:
        with fsspec.open(url, "rb") as f:
            yield from _Pass(f, url, self.name, config, stage).items()

    def check(self, url: str, config: ReadConfig | None = None) -> None:
        probe_archive(url)


def probe_archive(url: str) -> str:
    """"warc", "arc" or "wet" from the first records' headers; InputError if the first record
    header does not parse. WET: a conversion record comes before any page record."""
    with fsspec.open(url, "rb") as f:
        one = _Pass(f, url, "probe", ReadConfig(), "probe")
        cur = one.cur
        try:
            for seen in range(3):
                line = one.next_line()
                if not line:
                    break
                if one.arc is None:
                    one.arc = is_arc_line(line)
                if record_start(line, one.arc) != 0:
                    if seen == 0:
                        raise InputError(f"{url}: not a WARC/ARC file (it starts with "
                                         f"{line[:20]!r})")
                    break
                try:
                    rec = one.loader.parse_record_stream(HeaderBudget(cur), statusline=
                                                         cur.readline(), no_record_parse=True)
                except Exception as err:
                    if seen == 0:
                        raise InputError(f"{url}: the first record does not parse "
                                         f"({type(err).__name__}: {err})") from None
                    break
                if one.arc:
                    return "arc"
                if rec.rec_type in TEXT_TYPES:
                    return "wet"
                if rec.rec_type in PAGE_TYPES or not isinstance(rec.raw_stream, LimitReader):
                    break
                rec.raw_stream.stream = cur
                cur.skip(rec.raw_stream.limit)
        except StreamBreak as brk:
            raise InputError(f"{url}: broken gzip data ({brk})") from None
    return "wet" if ".wet" in url.rsplit("/", 1)[-1].lower() else "warc"
