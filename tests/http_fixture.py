"""A real HTTP(S) server on a loopback address for tests: routes per path, a request log.

    with serve({"/": Reply(200, b"hi"), "/slow": slow_handler}) as site:
        fetch(site.url("/"))
        assert site.count("/") == 1 and site.connections == 1

A route is a `Reply` (a fixed response) or a function `handler(exchange)` that answers through
`exchange.respond(...)`, or `exchange.send_head(...)` then `exchange.write(...)` /
`exchange.write_chunk(...)` for streaming, dripping or endless bodies: `write` returns False once
the client has gone, and counts the bytes it managed to hand to the socket. Unknown paths get
404; a "*" route, if given, answers them instead. Every request is logged (monotonic time, peer,
method, target, headers) before its handler runs, and every accepted connection is counted, even
one that never sends a request: a test can prove that a server saw no traffic at all.

Only loopback addresses (127.0.0.1, 127.0.0.2, ...) are meant to be used. Port 0 takes a free port.
`make_certificate` writes a self-signed certificate for HTTPS tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError,
               TimeoutError)


@dataclass(frozen=True)
class Reply:
    """A fixed response; Content-Length is added unless the headers carry one."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class LoggedRequest:
    time: float  # time.monotonic() when the request head had been read
    peer: tuple[str, int]
    method: str
    target: str  # the request target as sent, query included
    headers: list[tuple[str, str]]
    bytes_written: int = 0  # body and head bytes the handler got into the socket
    client_gone: bool = False  # a write failed: the client closed or reset the connection

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class Exchange:
    """One request being answered: what a route handler gets."""

    def __init__(self, handler: BaseHTTPRequestHandler, request: LoggedRequest, server):
        self._handler, self.request, self.server = handler, request, server

    def send_head(self, status: int, headers=(), reason: str | None = None) -> bool:
        head = f"HTTP/1.1 {status} {reason or _phrase(status)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        return self.write(head.encode("latin-1"))

    def write(self, data: bytes) -> bool:
        """Send raw bytes now; False (and no exception) when the client has gone."""
        if self.request.client_gone:
            return False
        try:
            self._handler.wfile.write(data)
            self._handler.wfile.flush()
        except CLIENT_GONE:
            self.request.client_gone = True
            return False
        self.request.bytes_written += len(data)
        return True

    def write_chunk(self, data: bytes) -> bool:
        """One chunk of a `Transfer-Encoding: chunked` body (b"" ends the body)."""
        return self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def respond(self, status: int = 200, body: bytes = b"", headers=(),
                reason: str | None = None) -> bool:
        headers = list(headers)
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            headers.append(("Content-Length", str(len(body))))
        return self.send_head(status, headers, reason) and (not body or self.write(body))


Handler = Callable[[Exchange], None]


def _phrase(status: int) -> str:
    from http import HTTPStatus
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _dispatch(self):
        server: LocalServer = self.server.owner
        request = LoggedRequest(time.monotonic(), self.client_address[:2], self.command,
                                self.path, list(self.headers.items()))
        with server._lock:
            server.log.append(request)
        route = server.routes.get(request.path, server.routes.get("*"))
        exchange = Exchange(self, request, server)
        if route is None:
            exchange.respond(404, b"not found\n")
        elif isinstance(route, Reply):
            exchange.respond(route.status, route.body, route.headers)
        else:
            route(exchange)
        self.close_connection = True  # one request per connection keeps the log simple

    do_GET = do_HEAD = do_POST = _dispatch

    def log_message(self, *args):
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler still dripping must not hold up the test's end
    # socketserver's listen queue of 5 overflows when many crawler threads connect at once: the
    # kernel drops the attempt and the client retries a second later (a stall, not politeness)
    request_queue_size = 128

    def __init__(self, address, owner: "LocalServer", tls: ssl.SSLContext | None):
        self.owner, self.tls = owner, tls
        super().__init__(address, _RequestHandler)

    def get_request(self):
        conn, addr = super().get_request()
        with self.owner._lock:
            self.owner.connections += 1
        return conn, addr

    def finish_request(self, request, client_address):
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:  # the handshake runs in the request's thread, not the accepting one
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with self.owner._lock:
                self.owner.tls_failures += 1
            return
        try:
            super().finish_request(request, client_address)
        finally:
            request.close()  # shutdown_request only closes the plain socket it was handed


@dataclass
class LocalServer:
    host: str
    routes: dict[str, Reply | Handler]
    scheme: str = "http"
    port: int = 0
    log: list[LoggedRequest] = field(default_factory=list)
    connections: int = 0  # accepted TCP connections
    tls_failures: int = 0  # HTTPS connections whose handshake failed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base + path

    def route(self, path: str, handler: Reply | Handler):
        self.routes[path] = handler

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.requests(path))


@contextmanager
def serve(routes: dict | None = None, host: str = "127.0.0.1", port: int = 0,
          tls: tuple[str, str] | None = None) -> Iterator[LocalServer]:
    """Run a LocalServer in a thread; `tls` = (certfile, keyfile) serves HTTPS."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"test servers listen on loopback addresses only, not {host}")
    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    site = LocalServer(host, dict(routes or {}), "https" if tls else "http")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_cls = type("_Server", (_HTTPServer,), {"address_family": family})
    server = server_cls((host, port), site, context)
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def make_certificate(folder: Path, names: list[str]) -> tuple[str, str]:
    """A self-signed certificate (its own CA) for DNS names / IP literals: (certfile, keyfile).
    Trust it with ssl.create_default_context(cafile=certfile)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)
