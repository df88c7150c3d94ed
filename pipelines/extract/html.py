"""HTML -> main text and metadata (trafilatura or resiliparse), under a per-document time limit.

Two extractors (`ExtractConfig.extractor`): trafilatura (the default: the higher F1 on real
pages) and resiliparse's `extract_plain_text(..., main_content=True)` (DCLM's choice: several
times less CPU a page); `bench/extraction_quality.py` measures both. Either way the page is
parsed once, by the extractor's own parser, and title, author, date and site name are read from
that tree by the same rules (`pipelines/extract/page_meta.py`).

A pathological page can keep either extractor busy for minutes (resiliparse needs minutes for
100,000 nested `<div>`s), and a Python thread cannot be stopped, so extraction runs in a child
process (`python -m pipelines.extract.html`) that the extract DoFn feeds
one page at a time over a pipe. When a page takes longer than the limit, the child is killed, the
page becomes an `extract_timeout` reject and a fresh child takes the next page: the worker is
never stuck. The child also decodes the bytes: the charset declared in the HTTP header, else in
the page's `<meta>`, else UTF-8 when it decodes cleanly, else the detected one.
"""

from __future__ import annotations

import codecs
import logging
import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
import time

from schemas.config import ExtractConfig

MODULE = __spec__.name  # what the child runs (`python -m`), wherever this file lives

_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([a-zA-Z0-9_.:-]+)", re.IGNORECASE)
_FRAME = struct.Struct("<Q")


class ExtractTimeout(Exception):
    """The page took longer than the time limit."""


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """(text, charset used). Declared charsets win over guessing; a declared charset that
    does not decode the bytes cleanly is not trusted (pages lie about their charset)."""
    if body.startswith(codecs.BOM_UTF8):
        return body[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace"), "utf-8"
    header = _HEADER_CHARSET.search(content_type or "")
    meta = _META_CHARSET.search(body[:4096])
    for declared in (header.group(1) if header else None,
                     meta.group(1).decode("ascii", "ignore") if meta else None):
        codec = _codec(declared)
        if codec in ("utf-16", "utf-32"):  # a <meta> read as ASCII cannot be UTF-16
            codec = None
        if codec:
            try:
                return body.decode(codec), codec
            except UnicodeDecodeError:
                continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    codec = detect_charset(body) or "cp1252"
    return body.decode(codec, errors="replace"), codec


def detect_charset(body: bytes) -> str | None:
    """charset_normalizer's guess, except that windows-1252 (what browsers assume for
    undeclared legacy pages) wins a near tie: on short Western European text the detector
    cannot tell it from its Baltic and Central European cousins."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(body[:200_000]))
    if not matches:
        return None
    best = matches[0]
    for match in matches:
        if _codec(match.encoding) == "cp1252" and match.chaos <= best.chaos + 0.1 \
                and match.coherence >= best.coherence - 0.02:
            return "cp1252"
    return _codec(best.encoding)


def extract_page(body: bytes, url: str | None, content_type: str, options: dict) -> dict | None:
    """Main text and metadata of one page, or None when it has no main text, with the extractor
    `options["extractor"]` names (default trafilatura)."""
    extractor = options.get("extractor", ExtractConfig.extractor)
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown extractor {extractor!r}")
    html, charset = decode_html(body, content_type)
    result = EXTRACTORS[extractor](html, url, options)
    return None if result is None else {**result, "charset": charset}


def extract_trafilatura(html: str, url: str | None, options: dict) -> dict | None:
    """trafilatura's main text (without its own, far slower, metadata search), metadata from
    what the page declares (`pipelines/extract/page_meta.py`)."""
    import trafilatura
    from trafilatura.utils import load_html

    from pipelines.extract.page_meta import LxmlPage, page_metadata

    tree = load_html(html)
    if tree is None:
        return None
    meta = page_metadata(LxmlPage(tree), url)
    result = trafilatura.bare_extraction(
        tree, url=url, with_metadata=False, include_comments=False,
        favor_precision=options.get("favor_precision", ExtractConfig.favor_precision),
        include_tables=options.get("include_tables", ExtractConfig.include_tables),
        fast=options.get("fast", ExtractConfig.fast))
    if result is None:
        return None
    return {"text": (result.text or "").strip(), **meta}


def extract_resiliparse(html: str, url: str | None, options: dict) -> dict | None:
    """resiliparse's main-content plain text (lexbor's parser and its main-content heuristics),
    metadata from the same tree by the same rules. Without comment sections (as trafilatura runs
    here) and image alt texts: F1 0.867 on the 80 pages of bench/extraction_quality.py, against
    0.843 with resiliparse's defaults (DCLM's call), at the same CPU."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    from pipelines.extract.page_meta import LexborPage, page_metadata

    tree = HTMLTree.parse(html)
    if tree.document is None or tree.body is None:
        return None
    # trafilatura's test of what is HTML at all (load_html): a page that does not say "html" in
    # its first 50 characters, has nothing in its <head> (lexbor adds an empty <head> and <body>)
    # and no <html> tag further down (a page after a PHP warning has one) is a fragment, plain
    # text or binary bytes, not a page: no text, as with trafilatura
    if "html" not in html[:50].lower() and tree.head.first_element_child is None \
            and "<html" not in html.lower():
        return None
    text = extract_plain_text(tree, main_content=True, comments=False, alt_texts=False)
    return {"text": text.strip(), **page_metadata(LexborPage(tree, html), url)}


EXTRACTORS = {"trafilatura": extract_trafilatura, "resiliparse": extract_resiliparse}


def _write_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve(stdin=None, stdout=None, extractor: str = "trafilatura") -> None:
    """The child's loop: (body, url, content_type, options) in, ("ok", result) or
    ("error", message) out, until the pipe closes. `extractor` is the one to import before
    saying "ready" (start-up is not a page's time)."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    # Ctrl-C reaches the whole process group; the parent decides, and ends this by closing the
    # pipe (or by a kill): no KeyboardInterrupt traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("trafilatura", "htmldate", "courlan", "charset_normalizer"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    extract_page(b"<html><body><p>ready</p></body></html>", None, "text/html",
                 {"extractor": extractor})  # imports, before "ready"
    _write_frame(stdout, ("ready", None))
    while True:
        try:
            (size,) = _FRAME.unpack(_read_exact(stdin, _FRAME.size))
        except EOFError:
            return
        body, url, content_type, options = pickle.loads(_read_exact(stdin, size))
        try:
            reply = ("ok", extract_page(body, url, content_type, options))
        except Exception as err:  # a broken page is that page's problem, not the child's
            reply = ("error", f"{type(err).__name__}: {err}")
        _write_frame(stdout, reply)


class TimedExtractor:
    """Runs `extract_page` in a child process with a wall-clock limit per page."""

    def __init__(self, timeout_s: float, options: dict):
        self.timeout_s, self.options = timeout_s, options
        self.proc: subprocess.Popen | None = None

    def _start(self, startup_s: float = 120.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        extractor = self.options.get("extractor", ExtractConfig.extractor)
        self.proc = subprocess.Popen([sys.executable, "-m", MODULE, extractor],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            self._reply(time.monotonic() + startup_s)  # ("ready", None)
        except (ExtractTimeout, EOFError) as err:
            self.close()
            raise RuntimeError(f"the extraction process did not start ({err!r})") from None

    def extract(self, body: bytes, url: str | None, content_type: str) -> dict | None:
        """The page's result; ExtractTimeout past the limit; RuntimeError if extraction
        raised (its message) or the child died."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            _write_frame(self.proc.stdin, (body, url, content_type, self.options))
            status, value = self._reply(time.monotonic() + self.timeout_s)
        except ExtractTimeout:
            self.close()
            raise
        except (EOFError, BrokenPipeError, OSError) as err:
            self.close()
            raise RuntimeError(f"extraction process died ({err})") from None
        if status == "error":
            raise RuntimeError(value)
        return value

    def _reply(self, deadline: float):
        out = self.proc.stdout
        header = self._read_until(out, _FRAME.size, deadline)
        (size,) = _FRAME.unpack(header)
        return pickle.loads(self._read_until(out, size, deadline))

    def _read_until(self, out, n: int, deadline: float) -> bytes:
        chunks, left, fd = [], n, out.fileno()
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ExtractTimeout()
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError("extraction process exited")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


if __name__ == "__main__":
    serve(extractor=sys.argv[1] if len(sys.argv) > 1 else ExtractConfig.extractor)
