"""A safe HTTP fetcher for the crawler: one GET with every limit a hostile web calls for.

Why not `requests`: it resolves and connects by itself, so the address we checked need not be the
one it connects to (DNS rebinding); its timeout is per read, so a server dripping a byte a second
never trips it; and it decompresses without a cap. This module instead

- resolves the host itself, checks EVERY address it resolves to (`address_block_reason`), then
  connects to a checked address; the Host header and TLS SNI/certificate check carry the name, and
  the connected socket's peer is checked once more;
- enforces ONE deadline per request over DNS, connect, TLS handshake, headers and the whole body
  (every socket read gets only the time left, so dripping cannot stretch it);
- caps the body on the wire (declared Content-Length or streamed bytes) and after decompression,
  decoding gzip / deflate / brotli incrementally in small pieces so a bomb is never expanded;
- follows redirects by hand, each hop re-checked (scheme, address, the caller's `check` hook);
- retries timeouts, connection errors, 5xx and 429 with exponential backoff, honouring
  Retry-After (seconds or HTTP date) up to `max_retry_wait_s`.

Nothing network-related raises: each problem comes back as `FetchResult.failure = (reason,
detail)`, the reason one of FAILURE_REASONS or the reason a `check` hook returned. A 404 or a 500
(after retries) is a result with its status, not a failure. Proxies from the environment are
ignored on purpose: a proxy would connect to addresses we never checked.

A `Fetcher` holds an SSL context, which does not pickle: build it in `DoFn.setup`; the
`FetchPolicy` is a frozen, picklable dataclass. One `Fetcher` may serve several threads (it keeps
no per-fetch state), but each fetch blocks its thread, retry waits included.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import ipaddress
import selectors
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator
from urllib.parse import quote, urljoin, urlsplit

import brotli

from schemas.config import CrawlConfig

FAILURE_REASONS = {
    "bad_url": "the URL cannot be parsed or has no host",
    "bad_scheme": "not http or https (the URL asked for, or a redirect target)",
    "blocked_address": "the host resolves to an address that is not public (loopback, private, "
                       "link-local, multicast, reserved, CGNAT, ...) and not in allowed_networks",
    "dns_error": "the host name does not resolve",
    "connect_error": "connection refused, reset or closed before a complete response head",
    "tls_error": "TLS handshake or certificate verification failed",
    "timeout": "the deadline (DNS + connect + TLS + headers + whole body) passed",
    "protocol_error": "malformed HTTP response, or a body cut short",
    "too_large": "body over max_body_bytes on the wire (declared or streamed)",
    "too_large_decompressed": "body over max_decompressed_bytes once decoded",
    "bad_encoding": "unsupported or stacked Content-Encoding, or corrupt compressed data",
    "too_many_redirects": "more than max_redirects redirects in a row",
}
RETRYABLE_FAILURES = frozenset({"timeout", "connect_error"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DECODE_PIECE = 64 * 1024  # decompressed bytes produced per step: the bomb never gets ahead of us
READ_SIZE = 64 * 1024

Check = Callable[[str], "tuple[str, str] | None"]
Resolver = Callable[[str, int], "list[str]"]


@dataclass(frozen=True)
class FetchPolicy:
    """Every limit of one fetch. `deadline_s` holds for each request (one attempt at one URL):
    a whole fetch takes at most (max_redirects + 1 + retries) x deadline_s plus retry waits."""

    user_agent: str = "corpus-builder/0.1 (+https://example.invalid/corpus)"
    deadline_s: float = 20.0  # per request: DNS + connect + TLS + headers + the whole body
    max_body_bytes: int = 5_000_000  # on the wire: after chunked framing, before decompression
    max_decompressed_bytes: int = 20_000_000  # after Content-Encoding is undone
    max_redirects: int = 5
    retries: int = 2  # extra attempts over the whole fetch, on RETRYABLE_FAILURES, 5xx and 429
    backoff_s: float = 1.0  # wait before the first retry; doubles with each retry
    max_retry_wait_s: float = 30.0  # a longer wait (backoff or Retry-After): no retry, result as is
    allowed_networks: tuple[str, ...] = ()  # CIDRs let through the address guard (tests, intranets)
    verify_tls: bool = True
    accept: str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

    def __post_init__(self):
        object.__setattr__(self, "allowed_networks", tuple(self.allowed_networks))
        for name in ("deadline_s", "max_body_bytes", "max_decompressed_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"fetch {name} must be positive")
        for name in ("max_redirects", "retries", "backoff_s", "max_retry_wait_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"fetch {name} must not be negative")
        _networks(self.allowed_networks)  # a bad CIDR is a configuration error: fail now

    @classmethod
    def from_config(cls, config: CrawlConfig, **overrides) -> "FetchPolicy":
        """The crawl's policy: its settings under their own names (`max_bytes` is
        `max_body_bytes`, `allow_addresses` is `allowed_networks`); `overrides` win."""
        return cls(**{
            "user_agent": config.user_agent, "deadline_s": config.deadline_s,
            "max_body_bytes": config.max_bytes,
            "max_decompressed_bytes": config.max_decompressed_bytes,
            "max_redirects": config.max_redirects, "retries": config.retries,
            "max_retry_wait_s": config.max_retry_wait_s,
            "allowed_networks": config.allow_addresses, **overrides})


@dataclass
class FetchResult:
    """What one `Fetcher.fetch` did. `status`, `headers`, `peer_ip`, `request_*` describe the last
    response received (a redirect's, when a later hop failed); `body` is set only on success.
    Archive a response only when `failure` is None."""

    url: str  # as asked for
    final_url: str  # the URL whose response is described here
    started_at: datetime  # UTC, when the fetch began
    redirect_chain: list[tuple[str, int]] = field(default_factory=list)  # (url, 3xx status) hops
    status: int | None = None
    reason: str = ""  # the status line's reason phrase
    http_version: str = ""  # "HTTP/1.1" or "HTTP/1.0"
    headers: list[tuple[str, str]] = field(default_factory=list)  # as received, in order
    body: bytes = b""  # Content-Encoding undone, within the caps
    wire_bytes: int = 0  # body bytes read off the wire (compressed size)
    peer_ip: str | None = None  # the address actually connected to
    request_line: str = ""  # e.g. "GET /a?b=1 HTTP/1.1"
    request_headers: list[tuple[str, str]] = field(default_factory=list)  # exactly as sent
    elapsed_s: float = 0.0  # the whole fetch: redirects, retries and waits included
    attempts: int = 0  # requests sent (or tried): redirect hops and retries included
    failure: tuple[str, str] | None = None  # (reason, detail)

    @property
    def ok(self) -> bool:
        return self.failure is None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


# ---- the address guard ------------------------------------------------------------------------

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _networks(cidrs) -> tuple:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _embedded_ipv4(ip) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form reaches: mapped (::ffff:a.b.c.d), 6to4, NAT64."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip) -> str | None:
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    if ip.version == 4 and ip in _CGNAT:
        return "carrier-grade NAT"
    if ip.version == 6 and ip.is_site_local:
        return "site-local"
    if not ip.is_global:
        return "not global"
    return None


def address_block_reason(address: str, allowed_networks=()) -> str | None:
    """None when `address` (an IP literal) may be connected to, else why not, e.g.
    "10.0.0.1 is private". `allowed_networks` (CIDR strings or ip_network objects) win over the
    rules; an IPv6 form that embeds an IPv4 address (mapped, 6to4, NAT64) is judged by the IPv4
    address it reaches."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    inner = _embedded_ipv4(ip)
    nets = [n if not isinstance(n, str) else ipaddress.ip_network(n, strict=False)
            for n in allowed_networks]
    if any(a.version == n.version and a in n for n in nets for a in (ip, inner) if a is not None):
        return None
    if inner is not None:  # the wrapper's own flags (::ffff:0:0/96 "private") say nothing
        kind = _kind(inner)
        return f"{ip} reaches {inner}, which is {kind}" if kind else None
    kind = _kind(ip)
    return f"{ip} is {kind}" if kind else None


def default_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, in the system resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos
                              if info[0] in (socket.AF_INET, socket.AF_INET6)))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay seconds or an HTTP date), else None."""
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


# ---- deadline-bound socket plumbing -----------------------------------------------------------

class _DeadlineReader(io.RawIOBase):
    """A socket's reading side where every read gets only the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float):
        super().__init__()
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed while reading the response")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _ResponseSource:
    """What http.client.HTTPResponse wants of a socket: makefile("rb")."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._reader = _DeadlineReader(sock, deadline)

    def makefile(self, mode: str):
        return io.BufferedReader(self._reader, READ_SIZE)


def _tls_handshake(sock, context: ssl.SSLContext, hostname: str, deadline: float):
    """TLS over a connected socket, the handshake bound by the deadline (a blocking handshake
    would wait the socket timeout per read, which a dripping server can repeat)."""
    tls = context.wrap_socket(sock, server_hostname=hostname, do_handshake_on_connect=False)
    try:
        tls.setblocking(False)
        with selectors.DefaultSelector() as selector:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    event = selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    event = selectors.EVENT_WRITE
                left = deadline - time.monotonic()
                selector.register(tls, event)
                ready = selector.select(left) if left > 0 else []
                selector.unregister(tls)
                if not ready:
                    raise TimeoutError("deadline passed during the TLS handshake")
        tls.setblocking(True)
        return tls
    except BaseException:
        tls.close()  # wrap_socket took over the socket's descriptor
        raise


def _run_with_deadline(fn, deadline: float, *args):
    """fn(*args) in a helper thread, given up at the deadline (getaddrinfo has no timeout)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as err:  # handed over to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True, name="fetcher-resolve")
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise TimeoutError("deadline passed while resolving the host")
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---- incremental decoders ---------------------------------------------------------------------

class _Identity:
    def feed(self, data: bytes) -> Iterator[bytes]:
        yield data

    def finish(self) -> Iterator[bytes]:
        return iter(())


class _ZlibDecoder:
    """gzip (multi-member too) or deflate (zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, gzip: bool):
        self._gzip, self._started = gzip, False
        self._d = zlib.decompressobj(31 if gzip else 15)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                piece = self._d.decompress(data, DECODE_PIECE)
            except zlib.error:
                if self._gzip or self._started:
                    raise
                self._d = zlib.decompressobj(-15)  # raw deflate, no zlib header
                piece = self._d.decompress(data, DECODE_PIECE)
            self._started = True
            if piece:
                yield piece
            data = self._d.unconsumed_tail
            if self._d.eof and self._d.unused_data and self._gzip:
                data, self._d = self._d.unused_data, zlib.decompressobj(31)

    def finish(self) -> Iterator[bytes]:
        while piece := self._d.decompress(b"", DECODE_PIECE):
            yield piece


class _BrotliDecoder:
    """Brotli >= 1.2: output_buffer_limit bounds each step (1.1 had no way to)."""

    def __init__(self):
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        piece = self._d.process(data, output_buffer_limit=DECODE_PIECE)
        if piece:
            yield piece
        while not self._d.can_accept_more_data():
            if piece := self._d.process(b"", output_buffer_limit=DECODE_PIECE):
                yield piece

    def finish(self) -> Iterator[bytes]:
        while not self._d.is_finished() and (
                piece := self._d.process(b"", output_buffer_limit=DECODE_PIECE)):
            yield piece


def _decoder(encodings: list[str]):
    """A decoder for the Content-Encoding header values, or a (reason, detail) failure."""
    codings = [c.strip().lower() for value in encodings for c in value.split(",")]
    codings = [c for c in codings if c and c not in ("identity", "none")]
    if not codings:
        return _Identity()
    if len(codings) > 1:
        return ("bad_encoding", f"stacked content codings {codings} are not supported")
    if codings[0] in ("gzip", "x-gzip"):
        return _ZlibDecoder(gzip=True)
    if codings[0] == "deflate":
        return _ZlibDecoder(gzip=False)
    if codings[0] == "br":
        return _BrotliDecoder()
    return ("bad_encoding", f"unsupported content coding {codings[0]!r}")


# ---- the fetcher ------------------------------------------------------------------------------

@dataclass
class _Opened:
    """A request answered up to its headers; the body not yet read."""

    sock: socket.socket
    response: http.client.HTTPResponse
    peer_ip: str
    request_line: str
    request_headers: list[tuple[str, str]]

    def close(self):
        self.response.close()
        self.sock.close()


def _failure_of(err: BaseException, stage: str) -> tuple[str, str]:
    detail = f"{stage}: {type(err).__name__}: {err}"
    if isinstance(err, TimeoutError):
        return "timeout", detail
    if isinstance(err, ssl.SSLError) and stage == "tls":
        return "tls_error", detail
    if isinstance(err, (http.client.RemoteDisconnected, ConnectionError)):
        return "connect_error", detail
    if isinstance(err, http.client.HTTPException):
        return "protocol_error", detail
    if isinstance(err, (zlib.error, brotli.error)):
        return "bad_encoding", detail
    return "connect_error", detail  # any other OSError


class Fetcher:
    """fetch(url) -> FetchResult under a FetchPolicy. `resolver(host, port) -> [ip, ...]` and
    `ssl_context` may be swapped (tests, custom CAs); the address guard applies to whatever the
    resolver returns."""

    def __init__(self, policy: FetchPolicy = FetchPolicy(), *, resolver: Resolver | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        self.policy = policy
        self._allowed = _networks(policy.allowed_networks)
        self._resolver = resolver or default_resolver
        if ssl_context is None:
            ssl_context = ssl.create_default_context()
            if not policy.verify_tls:
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
        self._ssl = ssl_context

    def resolve_checked(self, host: str, port: int, deadline: float | None = None):
        """(addresses, None) when every address `host` resolves to passes the guard, else
        ([], (reason, detail)). Only resolves: nothing is sent to the addresses."""
        if deadline is None:
            deadline = time.monotonic() + self.policy.deadline_s
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            addresses = [host]  # a literal: nothing to resolve
        except ValueError:
            try:
                addresses = _run_with_deadline(self._resolver, deadline, host, port)
            except TimeoutError as err:
                return [], ("timeout", f"resolve {host}: {err}")
            except (OSError, UnicodeError) as err:
                return [], ("dns_error", f"resolve {host}: {type(err).__name__}: {err}")
        if not addresses:
            return [], ("dns_error", f"resolve {host}: no addresses")
        for address in addresses:
            if why := address_block_reason(address, self._allowed):
                return [], ("blocked_address", f"{host} resolves to {address}: {why}")
        return addresses, None

    def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
              check: Check | None = None, max_redirects: int | None = None) -> FetchResult:
        """GET `url`. `etag` / `last_modified` (from an earlier response) make the first request
        conditional: a 304 is then a normal result. `check(url)` is asked about every URL before
        it is requested (the first and each redirect target) and may return (reason, detail) to
        refuse it; that reason becomes the failure's. `max_redirects` overrides the policy's."""
        policy = self.policy
        result = FetchResult(url=url, final_url=url, started_at=datetime.now(timezone.utc))
        start = time.monotonic()
        limit = policy.max_redirects if max_redirects is None else max_redirects
        extra = [(k, " ".join(v.split())) for k, v in
                 (("If-None-Match", etag), ("If-Modified-Since", last_modified)) if v]
        current, retries_used = url, 0
        while True:
            hop = f"redirect to {current}: " if result.redirect_chain else ""
            refused = self._refuse(current, check)
            if refused:
                result.failure = (refused[0], hop + refused[1])
                break
            deadline = time.monotonic() + policy.deadline_s
            result.attempts += 1
            opened = self._open(current, [] if result.redirect_chain else extra, deadline)
            if isinstance(opened, tuple):
                wait = min(policy.backoff_s * 2 ** retries_used, policy.max_retry_wait_s)
                if opened[0] in RETRYABLE_FAILURES and retries_used < policy.retries:
                    retries_used += 1
                    time.sleep(wait)
                    continue
                result.failure = (opened[0], hop + opened[1])
                break
            try:
                self._record(result, current, opened)
                status, location = result.status, opened.response.getheader("Location")
                if status in REDIRECT_STATUSES and location:
                    result.redirect_chain.append((current, status))
                    if len(result.redirect_chain) > limit:
                        result.failure = ("too_many_redirects", f"more than {limit} redirects")
                        break
                    try:
                        current = urljoin(current, location.strip()).split("#", 1)[0]
                    except ValueError as err:  # e.g. an unclosed IPv6 bracket
                        result.failure = ("bad_url", f"redirect to {location!r}: {err}")
                        break
                    continue
                if (status == 429 or status >= 500) and retries_used < policy.retries:
                    # Retry-After is a minimum: never sooner than our own backoff either
                    wait = max(parse_retry_after(opened.response.getheader("Retry-After")) or 0,
                               policy.backoff_s * 2 ** retries_used)
                    if wait <= policy.max_retry_wait_s:
                        opened.close()  # not held open through the wait (closing twice is fine)
                        retries_used += 1
                        time.sleep(wait)
                        continue
                result.body, result.wire_bytes, result.failure = self._read_body(opened, deadline)
                break
            finally:
                opened.close()
        result.elapsed_s = time.monotonic() - start
        return result

    # -- one request --------------------------------------------------------------------------

    def _refuse(self, url: str, check: Check | None) -> tuple[str, str] | None:
        """Why `url` may not be requested before any address is looked at, or None."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            return "bad_url", f"{url}: {err}"
        if parts.scheme not in ("http", "https"):
            return "bad_scheme", f"{url}: only http and https are fetched"
        if not parts.hostname:
            return "bad_url", f"{url}: no host"
        if port == 0:
            return "bad_url", f"{url}: port 0"
        return check(url) if check else None

    def _open(self, url: str, extra: list[tuple[str, str]], deadline: float):
        """Resolve, check, connect, send the request and read the response head: an _Opened,
        or a (reason, detail) failure."""
        parts = urlsplit(url)
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        try:
            host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() \
                else parts.hostname
        except UnicodeError as err:
            return "bad_url", f"{url}: host: {err}"
        addresses, failure = self.resolve_checked(host, port, deadline)
        if failure:
            return failure
        sock, failure = self._connect(host, addresses, port, deadline)
        if failure:
            return failure
        stage = "tls"
        try:
            if https:
                sock = _tls_handshake(sock, self._ssl, host, deadline)
            stage = "request"
            peer = sock.getpeername()[0]
            target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                           safe="/?:@!$&'()*+,;=%[]")
            bracketed = f"[{host}]" if ":" in host else host
            default_port = 443 if https else 80
            headers = [("Host", bracketed if port == default_port else f"{bracketed}:{port}"),
                       ("User-Agent", self.policy.user_agent), ("Accept", self.policy.accept),
                       ("Accept-Encoding", "gzip, deflate, br"), ("Connection", "close"), *extra]
            line = f"GET {target} HTTP/1.1"
            head = line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(head.encode("latin-1", "replace"))
            stage = "response head"
            response = http.client.HTTPResponse(_ResponseSource(sock, deadline), method="GET")
            response.begin()
            return _Opened(sock, response, peer, line, headers)
        except (OSError, http.client.HTTPException) as err:
            sock.close()
            return _failure_of(err, stage)

    def _connect(self, host: str, addresses: list[str], port: int, deadline: float):
        """A socket connected to one of the checked `addresses` (tried in order), whose peer
        passes the guard again; or (None, failure)."""
        failure = ("connect_error", f"connect {host}: no address tried")
        for address in addresses:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, ("timeout", f"connect {host}: deadline passed")
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(left)
                sock.connect((address, port))
                peer = sock.getpeername()[0]
            except OSError as err:
                sock.close()
                failure = _failure_of(err, f"connect {host} at {address}")
                continue
            why = address_block_reason(peer, self._allowed)
            if why or ipaddress.ip_address(peer.split("%")[0]) != \
                    ipaddress.ip_address(address.split("%")[0]):
                sock.close()
                return None, ("blocked_address", f"connected peer {peer}: {why or 'unexpected'}")
            return sock, None
        return None, failure

    @staticmethod
    def _record(result: FetchResult, url: str, opened: _Opened):
        response = opened.response
        result.final_url, result.status, result.reason = url, response.status, response.reason
        result.http_version = "HTTP/1.0" if response.version == 10 else "HTTP/1.1"
        result.headers = list(response.msg.items())
        result.peer_ip = opened.peer_ip
        result.request_line, result.request_headers = opened.request_line, opened.request_headers

    def _read_body(self, opened: _Opened, deadline: float):
        """(body, wire bytes, failure): the body streamed under both caps and the deadline."""
        response, policy = opened.response, self.policy
        if response.length is not None and response.length > policy.max_body_bytes:
            return b"", 0, ("too_large", f"Content-Length {response.length} is over "
                                         f"{policy.max_body_bytes} bytes")
        decoder = _decoder(response.msg.get_all("Content-Encoding") or [])
        if isinstance(decoder, tuple):
            return b"", 0, decoder
        pieces, wire, size = [], 0, 0
        try:
            while True:
                chunk = response.read1(READ_SIZE)
                wire += len(chunk)
                if wire > policy.max_body_bytes:
                    return b"", wire, ("too_large", f"body over {policy.max_body_bytes} bytes")
                if not chunk and response.length:
                    return b"", wire, ("protocol_error", f"body cut short: {response.length} "
                                                         f"of the declared bytes never came")
                for piece in (decoder.feed(chunk) if chunk else decoder.finish()):
                    size += len(piece)
                    if size > policy.max_decompressed_bytes:
                        return b"", wire, ("too_large_decompressed", f"decoded body over "
                                           f"{policy.max_decompressed_bytes} bytes")
                    pieces.append(piece)
                if not chunk:
                    return b"".join(pieces), wire, None
        except (OSError, http.client.HTTPException, zlib.error, brotli.error) as err:
            return b"", wire, _failure_of(err, "body")
