"""The safe fetcher against real HTTP(S) servers on loopback addresses.

Only servers these tests start are contacted (127.0.0.1, plus 127.0.0.2 standing in for an address
that must be refused: its accept count proves it saw nothing). Non-loopback addresses such as
169.254.169.254 or 10.0.0.1 are judged at the resolve/check level only, never connected to.
"""

import gzip
import socket
import time
import tracemalloc
import zlib
from datetime import datetime, timezone

import brotli
import pytest

from pipelines.crawl.fetcher import (
    FAILURE_REASONS,
    Fetcher,
    FetchPolicy,
    address_block_reason,
    parse_retry_after,
)
from schemas.config import CrawlConfig
from tests.http_fixture import Reply, make_certificate, serve

LOCAL = ("127.0.0.1/32",)


def fetcher(**overrides) -> Fetcher:
    settings = {"deadline_s": 2.0, "allowed_networks": LOCAL, "retries": 0, "backoff_s": 0.05,
                **overrides}
    return Fetcher(FetchPolicy(**settings))


def wait_for(condition, timeout=5.0):
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


# ---- plain fetches ------------------------------------------------------------------------------

def test_get_records_request_and_response():
    page = b"<html><body>hello</body></html>"
    headers = (("Content-Type", "text/html"), ("X-Dup", "1"), ("X-Dup", "2"))
    with serve({"/page": Reply(200, page, headers)}) as site:
        result = fetcher(user_agent="test-bot/1.0").fetch(site.url("/page?q=1"))
        seen = site.requests("/page")[0]
    assert result.ok and result.failure is None
    assert (result.status, result.reason, result.http_version) == (200, "OK", "HTTP/1.1")
    assert result.body == page and result.wire_bytes == len(page)
    assert result.headers[:3] == [("Content-Type", "text/html"), ("X-Dup", "1"), ("X-Dup", "2")]
    assert result.header("content-type") == "text/html"
    assert result.peer_ip == "127.0.0.1" and result.attempts == 1
    assert result.final_url == result.url == site.url("/page?q=1") and not result.redirect_chain
    assert result.request_line == "GET /page?q=1 HTTP/1.1"
    assert ("User-Agent", "test-bot/1.0") in result.request_headers
    assert seen.header("User-Agent") == "test-bot/1.0" and seen.target == "/page?q=1"
    assert seen.header("Host") == f"127.0.0.1:{site.port}"
    assert result.started_at.tzinfo is not None and result.elapsed_s > 0


def test_connects_to_the_checked_address_with_the_name_in_host():
    """The resolver's answer is what gets connected to; the name travels in the Host header."""
    with serve({"/": Reply(200, b"ok")}) as site:
        named = Fetcher(FetchPolicy(allowed_networks=LOCAL),
                        resolver=lambda host, port: ["127.0.0.1"])
        result = named.fetch(f"http://site.test:{site.port}/")
        assert site.log[0].header("Host") == f"site.test:{site.port}"
    assert result.ok and result.body == b"ok" and result.peer_ip == "127.0.0.1"


def test_404_is_a_result_not_a_failure():
    with serve({}) as site:
        result = fetcher().fetch(site.url("/missing"))
    assert result.failure is None and result.status == 404 and result.body == b"not found\n"


def test_304_round_trip_with_etag_and_last_modified():
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    def page(ex):
        if ex.request.header("If-None-Match") == '"v1"':
            ex.respond(304, headers=[("ETag", '"v1"')])
        else:
            ex.respond(200, b"body", [("ETag", '"v1"'), ("Last-Modified", stamp)])

    with serve({"/": page}) as site:
        first = fetcher().fetch(site.url("/"))
        again = fetcher().fetch(site.url("/"), etag=first.header("ETag"),
                                last_modified=first.header("Last-Modified"))
        sent = site.log[1]
    assert first.status == 200 and first.body == b"body"
    assert again.ok and again.status == 304 and again.body == b""
    assert sent.header("If-None-Match") == '"v1"' and sent.header("If-Modified-Since") == stamp
    assert ("If-None-Match", '"v1"') in again.request_headers


# ---- the deadline -------------------------------------------------------------------------------

def drip_body(ex):
    ex.send_head(200, [("Content-Length", "300")])
    for _ in range(300):  # one byte every 0.1 s: 30 s in all, each read well inside any timeout
        if not ex.write(b"x"):
            return
        time.sleep(0.1)


def drip_head(ex):
    ex.write(b"HTTP/1.1 200 OK\r\n")
    for _ in range(300):
        if not ex.write(b"X-Slow: 1\r\n"):
            return
        time.sleep(0.1)


@pytest.mark.parametrize("handler", [drip_body, drip_head], ids=["body", "headers"])
def test_drip_is_cut_at_the_deadline(handler):
    with serve({"/": handler}) as site:
        result = fetcher(deadline_s=1.0).fetch(site.url("/"))
    assert result.failure[0] == "timeout", result.failure
    assert 0.9 <= result.elapsed_s < 1.7
    assert result.body == b""


def test_tls_handshake_that_never_comes_is_cut_at_the_deadline():
    with socket.socket() as listener:  # accepts (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = fetcher(deadline_s=1.0).fetch(f"https://127.0.0.1:{port}/")
    assert result.failure[0] == "timeout" and 0.9 <= result.elapsed_s < 1.7


# ---- size caps ----------------------------------------------------------------------------------

def test_streamed_body_over_the_cap_is_cut_on_the_wire():
    cap, offered = 256 * 1024, 64 * 2**20
    block = b"a" * 65536

    def endless(ex):
        ex.send_head(200, [("Content-Type", "text/plain")])  # no length: read to the close
        for _ in range(offered // len(block)):
            if not ex.write(block):
                return

    with serve({"/": endless}) as site:
        result = fetcher(max_body_bytes=cap).fetch(site.url("/"))
        request = site.log[0]
        assert wait_for(lambda: request.client_gone)
    assert result.failure[0] == "too_large" and result.body == b""
    assert cap < result.wire_bytes <= cap + 65536
    # what the server got into the socket: the cap plus the kernel's buffers, far from all of it
    assert request.bytes_written < cap + 16 * 2**20 < offered


def test_declared_length_over_the_cap_is_refused_unread():
    def huge(ex):
        ex.send_head(200, [("Content-Length", str(10**9))])
        ex.write(b"a" * 1000)

    with serve({"/": huge}) as site:
        result = fetcher(max_body_bytes=10_000).fetch(site.url("/"))
    assert result.failure[0] == "too_large" and "Content-Length" in result.failure[1]
    assert result.wire_bytes == 0


def gzip_bomb(ex):
    """1 GiB of zeros, gzipped on the fly (about 1 MiB on the wire) until the client leaves."""
    ex.send_head(200, [("Content-Encoding", "gzip")])
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(2**20)
    for _ in range(1024):
        if not ex.write(packer.compress(zeros)):
            return
    ex.write(packer.flush())


def test_gzip_bomb_stops_at_the_decompressed_cap_without_expanding():
    cap = 2**20
    with serve({"/": gzip_bomb}) as site:
        tracemalloc.start()
        try:
            result = fetcher(max_decompressed_bytes=cap).fetch(site.url("/"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.failure[0] == "too_large_decompressed" and result.body == b""
    assert result.wire_bytes < 64 * 1024  # ~1 KiB of gzip per MiB: it stopped right at the cap
    assert peak < 8 * cap  # a few 64 KiB decode steps beyond the cap, not the gigabyte


def test_brotli_bomb_stops_at_the_decompressed_cap():
    packer, zeros = brotli.Compressor(quality=1), bytes(2**20)
    bomb = b"".join(packer.process(zeros) for _ in range(512)) + packer.finish()  # 512 MiB
    cap = 2**20
    with serve({"/": Reply(200, bomb, (("Content-Encoding", "br"),))}) as site:
        tracemalloc.start()
        try:
            result = fetcher(max_decompressed_bytes=cap).fetch(site.url("/"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert result.failure[0] == "too_large_decompressed"
    assert peak < 8 * cap + len(bomb)


@pytest.mark.parametrize("coding", ["br", "gzip", "deflate", "raw-deflate"])
def test_compressed_bodies_are_decoded(coding):
    page = b"<html>" + b"compressible text " * 5000 + b"</html>"
    packed = {"br": lambda: brotli.compress(page), "gzip": lambda: gzip.compress(page),
              "deflate": lambda: zlib.compress(page),
              "raw-deflate": lambda: zlib.compress(page, wbits=-15)}[coding]()
    header = "deflate" if coding == "raw-deflate" else coding

    def chunked(ex):  # chunked framing under the content coding, in uneven pieces
        ex.send_head(200, [("Content-Encoding", header), ("Transfer-Encoding", "chunked")])
        for i in range(0, len(packed), 777):
            ex.write_chunk(packed[i:i + 777])
        ex.write_chunk(b"")

    with serve({"/": chunked}) as site:
        result = fetcher().fetch(site.url("/"))
        assert "br" in site.log[0].header("Accept-Encoding")
    assert result.ok, result.failure
    assert result.body == page and result.wire_bytes == len(packed)


def test_unknown_or_corrupt_encoding_is_a_failure():
    with serve({"/zstd": Reply(200, b"x", (("Content-Encoding", "zstd"),)),
                "/bad": Reply(200, b"not gzip at all", (("Content-Encoding", "gzip"),))}) as site:
        unknown = fetcher().fetch(site.url("/zstd"))
        corrupt = fetcher().fetch(site.url("/bad"))
    assert unknown.failure[0] == "bad_encoding" and corrupt.failure[0] == "bad_encoding"


# ---- redirects ----------------------------------------------------------------------------------

def test_redirect_chain_is_followed_and_recorded():
    with serve({"/a": Reply(301, headers=(("Location", "/b"),)),
                "/b": Reply(302, headers=(("Location", "c?x=1#frag"),)),
                "/c": Reply(200, b"end")}) as site:
        result = fetcher().fetch(site.url("/a"), etag='"old"')
        sent = site.log
    assert result.ok and result.body == b"end" and result.status == 200
    assert result.redirect_chain == [(site.url("/a"), 301), (site.url("/b"), 302)]
    assert result.final_url == site.url("/c?x=1") and result.attempts == 3
    assert sent[0].header("If-None-Match") == '"old"'  # conditional only for the URL asked for
    assert sent[2].header("If-None-Match") is None


def test_redirect_to_a_blocked_address_is_refused_unconnected():
    with serve({}, host="127.0.0.2") as refused:
        with serve({"/go": Reply(302, headers=(("Location", refused.url("/")),))}) as site:
            result = fetcher().fetch(site.url("/go"))
        assert refused.connections == 0 and refused.count() == 0
    assert result.failure[0] == "blocked_address", result.failure
    assert "127.0.0.2" in result.failure[1] and "redirect to" in result.failure[1]
    assert result.status == 302 and result.redirect_chain == [(site.url("/go"), 302)]


def test_redirect_to_file_scheme_is_refused():
    with serve({"/go": Reply(301, headers=(("Location", "file:///etc/passwd"),))}) as site:
        result = fetcher().fetch(site.url("/go"))
    assert result.failure[0] == "bad_scheme" and "file:///etc/passwd" in result.failure[1]
    assert result.body == b""


def test_redirect_loop_is_too_many_redirects():
    with serve({"/loop": Reply(302, headers=(("Location", "/loop"),))}) as site:
        result = fetcher(max_redirects=3).fetch(site.url("/loop"))
        assert site.count("/loop") == 4  # the first request and three redirects, no more
    assert result.failure[0] == "too_many_redirects" and len(result.redirect_chain) == 4


def test_check_hook_sees_every_hop():
    asked = []

    def check(url):
        asked.append(url)
        return ("robots_disallowed", "Disallow: /private") if "/private" in url else None

    with serve({"/go": Reply(301, headers=(("Location", "/private/x"),))}) as site:
        result = fetcher().fetch(site.url("/go"), check=check)
        assert site.count("/private/x") == 0
    assert asked == [site.url("/go"), site.url("/private/x")]
    assert result.failure == ("robots_disallowed",
                              f"redirect to {site.url('/private/x')}: Disallow: /private")


# ---- retries ------------------------------------------------------------------------------------

def test_500_twice_then_200_succeeds_after_retries():
    def flaky(ex):
        if ex.server.count("/") <= 2:
            ex.respond(500, b"oops")
        else:
            ex.respond(200, b"fine")

    with serve({"/": flaky}) as site:
        result = fetcher(retries=3).fetch(site.url("/"))
        times = [r.time for r in site.log]
    assert result.ok and result.status == 200 and result.body == b"fine"
    assert result.attempts == 3 and len(times) == 3
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1  # backoff doubles


def test_retries_exhausted_returns_the_last_5xx_as_a_result():
    with serve({"/": Reply(502, b"bad gateway")}) as site:
        result = fetcher(retries=1).fetch(site.url("/"))
    assert result.failure is None and result.status == 502 and result.attempts == 2
    assert result.body == b"bad gateway"


def test_retry_after_seconds_is_honoured():
    def busy(ex):
        if ex.server.count("/") == 1:
            ex.respond(503, headers=[("Retry-After", "1")])
        else:
            ex.respond(200, b"ok")

    with serve({"/": busy}) as site:
        result = fetcher(retries=2, max_retry_wait_s=5).fetch(site.url("/"))
        gap = site.log[1].time - site.log[0].time
    assert result.ok and result.status == 200 and result.attempts == 2
    assert gap >= 0.95


def test_retry_after_beyond_the_max_wait_is_not_waited_for():
    with serve({"/": Reply(429, b"slow down", (("Retry-After", "3600"),))}) as site:
        result = fetcher(retries=3, max_retry_wait_s=5).fetch(site.url("/"))
    assert result.status == 429 and result.attempts == 1 and result.elapsed_s < 1
    assert result.header("Retry-After") == "3600"


def test_parse_retry_after():
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as probe:  # a free port on 127.0.0.1 with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = fetcher(retries=1).fetch(f"http://127.0.0.1:{port}/")
    assert result.failure[0] == "connect_error" and result.attempts == 2


# ---- the address guard --------------------------------------------------------------------------

BLOCKED = ["127.0.0.1", "127.0.0.2", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
           "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255",
           "240.0.0.1", "192.0.2.1", "198.18.0.1", "::1", "::", "fe80::1", "fe80::1%1", "fc00::1",
           "fd12:3456::1", "ff02::1", "ff0e::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
           "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:a00:1::1", "2001:db8::1", "::a00:1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450::1",
          "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address):
    assert address_block_reason(address) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert address_block_reason(address) is None


def test_allowed_networks_open_the_guard_exactly():
    assert address_block_reason("127.0.0.1", LOCAL) is None
    assert address_block_reason("::ffff:127.0.0.1", LOCAL) is None  # the same host, mapped
    assert address_block_reason("127.0.0.2", LOCAL) == "127.0.0.2 is loopback"
    assert address_block_reason("10.1.2.3", ["10.0.0.0/8"]) is None
    assert "reaches 10.0.0.1" in address_block_reason("::ffff:10.0.0.1")


def test_resolve_checked_refuses_without_connecting():
    guard = Fetcher(FetchPolicy())
    for host in ("169.254.169.254", "10.0.0.1", "::ffff:192.168.0.1", "fd00::1"):
        addresses, failure = guard.resolve_checked(host, 80)
        assert addresses == [] and failure[0] == "blocked_address", host
    # every address of a name counts: one private address among public ones blocks it
    mixed = Fetcher(FetchPolicy(), resolver=lambda host, port: ["93.184.216.34", "10.0.0.1"])
    assert mixed.resolve_checked("mixed.test", 80)[1][0] == "blocked_address"
    assert Fetcher(FetchPolicy(), resolver=lambda h, p: ["8.8.8.8"]).resolve_checked(
        "public.test", 443) == (["8.8.8.8"], None)


def test_every_resolved_address_is_checked_before_any_connection():
    with serve({}, host="127.0.0.2") as other, serve({"/": Reply(200, b"ok")}) as site:
        both = Fetcher(FetchPolicy(allowed_networks=LOCAL),
                       resolver=lambda host, port: ["127.0.0.1", "127.0.0.2"])
        result = both.fetch(f"http://two.test:{site.port}/")
        assert site.connections == 0 and other.connections == 0
    assert result.failure[0] == "blocked_address" and "127.0.0.2" in result.failure[1]


def test_localhost_is_refused_unless_allowed():
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", 80,
                                                          type=socket.SOCK_STREAM)}
    with serve({"/": Reply(200, b"ok")}) as site:
        refused = fetcher(allowed_networks=()).fetch(f"http://localhost:{site.port}/")
        assert site.connections == 0
        allowed = fetcher().fetch(f"http://localhost:{site.port}/")
    assert refused.failure[0] == "blocked_address" and refused.attempts == 1
    if resolved == {"127.0.0.1"}:
        assert allowed.ok and allowed.body == b"ok"
    else:  # localhost also has an address outside 127.0.0.1/32 here: still refused
        assert allowed.failure[0] == "blocked_address"


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
def test_other_spellings_of_loopback_are_refused(host):
    """What the resolver makes of a name is what is checked, however the URL spells it."""
    numeric = socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    assert {info[4][0] for info in numeric} == {"127.0.0.1"}  # parsed locally: no DNS query
    with serve({"/": Reply(200, b"ok")}) as site:
        result = fetcher(allowed_networks=()).fetch(f"http://{host}:{site.port}/")
        assert site.connections == 0
    assert result.failure[0] == "blocked_address" and "127.0.0.1" in result.failure[1]


def test_unparseable_redirect_target_is_a_failure():
    with serve({"/go": Reply(302, headers=(("Location", "http://[::1/x"),))}) as site:
        result = fetcher().fetch(site.url("/go"))
    assert result.failure[0] == "bad_url" and result.status == 302


@pytest.mark.parametrize("url,reason", [("ftp://127.0.0.1/x", "bad_scheme"),
                                        ("file:///etc/passwd", "bad_scheme"),
                                        ("http:///nohost", "bad_url"),
                                        ("http://127.0.0.1:99999/", "bad_url"),
                                        ("http://[::1/", "bad_url")])
def test_unfetchable_urls_fail_with_a_reason(url, reason):
    result = fetcher().fetch(url)
    assert result.failure[0] == reason and result.status is None and result.attempts == 0
    assert reason in FAILURE_REASONS


def test_names_that_do_not_resolve_are_dns_errors():
    def nxdomain(host, port):  # the system resolver would send a query off this machine
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = Fetcher(FetchPolicy(), resolver=nxdomain).fetch("http://nonexistent.test/")
    assert result.failure[0] == "dns_error" and "nonexistent.test" in result.failure[1]
    empty = Fetcher(FetchPolicy(), resolver=lambda h, p: []).fetch("http://empty.test/")
    assert empty.failure[0] == "dns_error"


def test_a_resolver_that_hangs_is_cut_at_the_deadline():
    result = Fetcher(FetchPolicy(deadline_s=0.5, retries=0),
                     resolver=lambda h, p: time.sleep(3) or ["8.8.8.8"]).fetch("http://slow.test/")
    assert result.failure[0] == "timeout" and result.elapsed_s < 1.0


# ---- HTTPS --------------------------------------------------------------------------------------

def test_https_verifies_the_name_while_connecting_to_the_checked_address(tmp_path):
    import ssl
    cert, key = make_certificate(tmp_path, ["site.test"])
    trusting = ssl.create_default_context(cafile=cert)
    with serve({"/": Reply(200, b"secure")}, tls=(cert, key)) as site:
        url = f"https://site.test:{site.port}/"
        resolver = lambda host, port: ["127.0.0.1"]  # noqa: E731
        good = Fetcher(FetchPolicy(allowed_networks=LOCAL), resolver=resolver,
                       ssl_context=trusting).fetch(url)
        untrusted = Fetcher(FetchPolicy(allowed_networks=LOCAL), resolver=resolver).fetch(url)
        wrong_name = Fetcher(FetchPolicy(allowed_networks=LOCAL), ssl_context=trusting).fetch(
            site.url("/"))  # https://127.0.0.1:port/: the certificate names site.test only
        assert wait_for(lambda: site.tls_failures == 2)
    assert good.ok and good.body == b"secure" and good.peer_ip == "127.0.0.1"
    assert untrusted.failure[0] == "tls_error" and wrong_name.failure[0] == "tls_error"


def test_policy_from_scrape_config():
    policy = FetchPolicy.from_config(CrawlConfig(deadline_s=7, max_bytes=1234,
                                                 allow_addresses=("10.1.0.0/16",)), retries=5)
    assert (policy.deadline_s, policy.max_body_bytes, policy.retries) == (7, 1234, 5)
    assert policy.allowed_networks == ("10.1.0.0/16",)
    assert policy.user_agent == CrawlConfig().user_agent
    with pytest.raises(ValueError):
        FetchPolicy(allowed_networks=("not a network",))
