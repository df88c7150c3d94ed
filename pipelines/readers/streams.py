"""A byte cursor over a plain or gzip file that survives broken gzip members.

Python's `gzip` module stops at the first corrupt member and cannot say where it broke. Web
archives are usually one gzip member per record, so a broken member should cost one record:
`Cursor` decompresses member by member, knows which member each byte came from, finds the exact
byte where a member breaks, and can resume at the next member (`recover`). It also gives the
record readers what warcio's parser needs (`read`, `readline`) with lines of bounded length, a
`peek_line` that consumes nothing, forward `skip` without buffering, and `seek` back to any
position since the last `mark` (a rare path: only resynchronisation after a broken record uses it).
"""

from __future__ import annotations

import zlib

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 16  # compressed bytes fed to zlib at a time
MAX_OUT = 1 << 20  # decompressed bytes produced per call, so a gzip bomb stays bounded
MAX_LINE = 1 << 20  # a "line" longer than this is returned in pieces


class StreamBreak(Exception):
    """The compressed stream is corrupt or truncated; `offset` is the compressed byte where it
    broke, `member` the compressed offset of the member that broke."""

    def __init__(self, message: str, offset: int, member: int):
        super().__init__(message)
        self.offset, self.member = offset, member


class Cursor:
    """Logical (decompressed) bytes of `f`, which must be seekable; positions are logical."""

    def __init__(self, f, plain: bool = False):
        """`plain`: read `f` as it is, sequentially (e.g. a decompressing stream)."""
        self.f = f
        self.plain = plain
        if plain:
            self.size, self.gzip = getattr(f, "size", None), False
        else:
            f.seek(0, 2)
            self.size = f.tell()
            f.seek(0)
            self.gzip = f.read(2) == GZIP_MAGIC
            f.seek(0)
        self._buf, self._i, self._buf_pos = b"", 0, 0  # _buf[0] is at logical _buf_pos
        self._eof = False
        self._break: StreamBreak | None = None  # raised once the bytes before it are used
        self._dobj = None  # zlib state of the member being decompressed (gzip only)
        self._pending = b""  # compressed bytes not yet given to zlib, starting at _raw_pos
        self._raw_pos = 0
        self._member_off = 0  # compressed offset of the member being decompressed
        self._members: list[tuple[int, int]] = []  # (logical start, compressed offset)
        self.members_seen = 0
        self.member_lines = False  # a gzip member start also ends a line (archives: a member
        # is a record, so a line running into the next member was cut off)

    # -- producing bytes -------------------------------------------------------------------

    def _raw(self, n: int) -> bytes:
        """At least n compressed bytes from _raw_pos (fewer at the end of the file)."""
        while len(self._pending) < n:
            more = self.f.read(CHUNK)
            if not more:
                break
            self._pending += more
        return self._pending

    def _more(self) -> bytes:
        """The next decompressed bytes; b"" at the end; StreamBreak where the data breaks."""
        if not self.gzip:
            return self.f.read(CHUNK)
        while True:
            if self._dobj is None:  # between members
                head = self._raw(2)
                if not head:
                    return b""
                if not head.startswith(GZIP_MAGIC):
                    left = self.size - self._raw_pos
                    raise StreamBreak(f"{left} bytes after the gzip member ending at offset "
                                      f"{self._raw_pos} are not gzip data",
                                      self._raw_pos, self._raw_pos)
                self._dobj = zlib.decompressobj(31)
                self._member_off = self._raw_pos
                self._members.append((self._buf_pos + len(self._buf), self._raw_pos))
                self.members_seen += 1
            data = self._raw(1)
            if not data:
                raise StreamBreak(f"the gzip member at offset {self._member_off} is truncated "
                                  f"(the file ends inside it)", self.size, self._member_off)
            self._pending = b""
            saved = self._dobj.copy()
            try:
                out = self._dobj.decompress(data, MAX_OUT)
            except zlib.error as err:
                return self._salvage(saved, data, err)
            rest = self._dobj.unused_data if self._dobj.eof else self._dobj.unconsumed_tail
            self._raw_pos += len(data) - len(rest)
            self._pending = rest
            if self._dobj.eof:
                self._dobj = None
            if out:
                return out

    def _salvage(self, dobj, data: bytes, err: Exception) -> bytes:
        """Replay the chunk that failed byte by byte: return what decompressed before the bad
        byte and leave a StreamBreak naming that byte to be raised next."""
        good, bad = [], len(data)
        for i in range(len(data)):
            try:
                good.append(dobj.decompress(data[i:i + 1]))
            except zlib.error:
                bad = i
                break
        offset = self._raw_pos + bad
        self._break = StreamBreak(f"the gzip member at offset {self._member_off} is corrupt at "
                                  f"offset {offset} ({err})", offset, self._member_off)
        self._dobj = None
        return b"".join(good)

    def _fill(self, n: int) -> None:
        """Make n unread bytes available, unless the data ends or breaks first."""
        while len(self._buf) - self._i < n:
            if self._break is not None:
                if len(self._buf) > self._i:
                    return
                brk, self._break = self._break, None
                self._eof = True  # nothing more until recover()
                raise brk
            if self._eof:
                return
            try:
                more = self._more()
            except StreamBreak as brk:
                self._break = brk
                continue
            if not more:
                self._eof = True
                return
            self._buf = self._buf[self._i:] + more
            self._buf_pos += self._i
            self._i = 0

    # -- reading ---------------------------------------------------------------------------

    def tell(self) -> int:
        return self._buf_pos + self._i

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (fewer only at the end or just before a break)."""
        need = MAX_LINE if n is None or n < 0 else n
        parts = []
        while need > 0:
            if self._i == len(self._buf):
                try:
                    self._fill(1)
                except StreamBreak as brk:
                    if not parts:
                        raise
                    self._break, self._eof = brk, False  # raised by the next read
                    break
                if self._i == len(self._buf):
                    break
            piece = self._buf[self._i:self._i + need]
            self._i += len(piece)
            need -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def readline(self, limit: int | None = None) -> bytes:
        """One line with its newline, at most `limit` (default MAX_LINE) bytes, and not past a
        member start if `member_lines`."""
        limit = MAX_LINE if limit is None or limit < 0 else limit
        if limit == 0:
            return b""
        searched = 0
        while True:
            avail = len(self._buf) - self._i
            j = self._buf.find(b"\n", self._i + searched, self._i + min(avail, limit))
            if j >= 0:
                size = j + 1 - self._i
                break
            if avail >= limit:
                size = limit
                break
            searched = avail
            self._fill(avail + 1)
            if len(self._buf) - self._i == avail:  # end of data
                size = avail
                break
        if self.member_lines and (stop := self.next_member_start(self.tell())) is not None:
            size = min(size, stop - self.tell())
        line = self._buf[self._i:self._i + size]
        self._i += size
        return line

    def peek_line(self, limit: int | None = None) -> bytes:
        """The next line, left unread."""
        line = self.readline(limit)
        self._i -= len(line)  # readline never drops bytes it returns from the buffer
        return line

    def skip(self, n: int) -> int:
        """Pass over n bytes without keeping them; returns how many there were."""
        done = min(n, len(self._buf) - self._i)
        self._i += done
        if done < n - 1 and not self.gzip and not self.plain:  # uncompressed: jump, but read
            target = min(self.tell() + (n - done), self.size) - 1  # the last byte (prev_byte)
            done += target - self.tell()
            self._reset(target)
            self.f.seek(target)
        while done < n:
            self._fill(min(n - done, CHUNK))
            got = min(n - done, len(self._buf) - self._i)
            if got == 0:
                break
            self._i += got
            done += got
        return done

    def prev_byte(self) -> bytes | None:
        """The byte just before the position, if still buffered."""
        return self._buf[self._i - 1:self._i] if self._i else None

    def _reset(self, pos: int) -> None:
        self._buf, self._i, self._buf_pos = b"", 0, pos
        self._eof, self._break = False, None

    # -- positions -------------------------------------------------------------------------

    def mark(self, pos: int) -> None:
        """Nothing before `pos` will be sought again: forget older member starts."""
        keep = 0
        for k, (start, _off) in enumerate(self._members):
            if start <= pos:
                keep = k
        del self._members[:keep]

    def member_at(self, pos: int) -> int | None:
        """Compressed offset of the gzip member holding logical byte `pos` (None: not gzip)."""
        found = None
        for start, off in self._members:
            if start <= pos:
                found = off
        return found

    def next_member_start(self, pos: int) -> int | None:
        """Logical start of the first known gzip member after `pos`."""
        return next((start for start, _off in self._members if start > pos), None)

    def seek(self, pos: int) -> None:
        if self._buf_pos <= pos <= self._buf_pos + len(self._buf):
            self._i = pos - self._buf_pos
            return
        if pos > self.tell():
            self.skip(pos - self.tell())
            return
        if self.plain:
            raise ValueError(f"cannot seek back to {pos} in a stream")
        if not self.gzip:
            self._reset(pos)
            self.f.seek(pos)
            return
        starts = [(s, off) for s, off in self._members if s <= pos]
        if not starts:
            raise ValueError(f"cannot seek back to {pos}: before the mark")
        start, off = starts[-1]
        self._members = [m for m in self._members if m[0] < start]
        self._reset(start)
        self._restart_at(off)
        self.skip(pos - start)

    def _restart_at(self, raw_offset: int) -> None:
        self.f.seek(raw_offset)
        self._raw_pos, self._pending, self._dobj = raw_offset, b"", None

    def recover(self, brk: StreamBreak) -> int | None:
        """After `brk`: continue at the next gzip member after the broken one; return its
        compressed offset, or None when no member follows (the rest of the file is lost)."""
        if not self.gzip:
            return None
        candidate = brk.member + 1
        while True:
            candidate = self._find_member(candidate)
            if candidate is None:
                return None
            if self._decompresses(candidate):
                self._members = []
                self._reset(self.tell())
                self._restart_at(candidate)
                return candidate
            candidate += 1

    def _find_member(self, start: int) -> int | None:
        """First offset >= start with a plausible gzip member header (magic, deflate, flags)."""
        self.f.seek(start)
        pos, tail = start, b""
        while True:
            block = self.f.read(CHUNK)
            if not block:
                return None
            data = tail + block
            base = pos - len(tail)
            i = data.find(b"\x1f\x8b\x08")
            while i >= 0 and i + 3 < len(data):
                if not data[i + 3] & 0xE0:  # reserved flag bits are zero
                    return base + i
                i = data.find(b"\x1f\x8b\x08", i + 1)
            if i >= 0:  # magic at the very end: look again with the next block
                tail = data[i:]
            else:
                tail = data[-2:]
            pos += len(block)

    def _decompresses(self, offset: int) -> bool:
        self.f.seek(offset)
        try:
            dobj = zlib.decompressobj(31)
            out = dobj.decompress(self.f.read(CHUNK), 4096)
            return bool(out) or dobj.eof
        except zlib.error:
            return False
