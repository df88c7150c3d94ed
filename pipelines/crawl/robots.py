"""robots.txt for the crawler: fetched once per origin through the safe fetcher, read by protego.

Not `urllib.robotparser`: it applies the first matching rule where RFC 9309 wants the longest,
knows no `*` or `$`, and fetches past our address guard and limits. protego does the RFC's
matching (longest pattern, `Allow` wins a tie, `*`, `$`, percent-encoding) and reads Crawl-delay
and Sitemap lines. Around it, only where we need another answer (tests/test_robots.py decides):

- the group. protego takes the group whose name occurs in the agent it is asked about ("corpus"
  rules "corpus-builder") and compares whole values ("Corpus-Builder/2.0" rules no one); the RFC
  wants the groups whose product token equals ours, else the `*` groups. So each User-agent line
  is first renamed by its product token: ours to the name protego is asked about, others to one
  that cannot match;
- a leading byte order mark is dropped (protego would read it into the first key);
- relative Sitemap URLs are resolved, and only the first 512 KiB is read.

The differences we take from protego are held by tests/test_robots_protego.py.

What the fetch of robots.txt means (RFC 9309 section 2.3.1): 2xx, parse it; 4xx "unavailable",
crawl anything; 5xx, 429 (as Google does) or no answer at all (timeout, refused, DNS, blocked
address, too large, ...) "unreachable", crawl nothing (reason `robots_unavailable`). Redirects are
followed (the fetch callable must follow at least five, as the RFC asks); more than that counts as
unavailable, as the RFC allows. The rules found apply to the origin that was asked for.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit

from protego import Protego

from pipelines.crawl.fetcher import FetchResult

PARSE_LIMIT = 512 * 1024  # RFC 9309: at least 500 KiB must be parsed; the rest is ignored
_AGENT_LINE = re.compile(r"\s*user(?:-|\s+)?agent(?:\s*:|\s)([^#]*)", re.IGNORECASE)  # as protego
_US = "this-crawler"  # what our groups are renamed to, and the name protego is asked about
_OTHER = "another crawler"  # other groups: a space never occurs in _US, so never matches


def product_token(user_agent: str) -> str:
    """The name robots.txt groups are matched against: "corpus-builder/0.1 (+url)" becomes
    "corpus-builder"."""
    return re.split(r"[/\s]", user_agent.strip(), maxsplit=1)[0].lower()


def _rename_agents(text: str, token: str) -> tuple[str, str]:
    """`text` with each User-agent line renamed by its product token (see the module docstring),
    and the group that applies: `token`, "*", or "" (none)."""
    lines, names = [], set()
    for line in text.splitlines():
        agent = _AGENT_LINE.match(line)
        if agent and agent[1].strip():  # protego lets an empty one end a group, nothing more
            name = product_token(agent[1])
            names.add(name)
            line = "User-agent: " + (_US if name == token else "*" if name == "*" else _OTHER)
        lines.append(line)
    return "\n".join(lines), token if token in names else "*" if "*" in names else ""


@dataclass
class RobotsRules:
    """The rules of one robots.txt for one user agent, or a blanket verdict."""

    parsed: Protego | None = None  # None: nothing is disallowed (unless `unavailable`)
    crawl_delay: float | None = None
    sitemaps: list[str] = field(default_factory=list)
    group: str = ""  # which group applies: the product token, "*", or "" (none)
    unavailable: tuple[str, str] | None = None  # set: nothing may be crawled, for this reason
    source: str = "parsed"  # how the verdict came about, for logs and stats

    def allowed(self, url: str) -> tuple[bool, tuple[str, str] | None]:
        if self.unavailable:
            return False, self.unavailable
        if self.parsed is None or self.parsed.can_fetch(url, _US):
            return True, None
        return False, ("robots_disallowed", f"disallowed by robots.txt (group {self.group})")


def parse_robots(text: str, user_agent: str, base_url: str = "") -> RobotsRules:
    """RobotsRules for `user_agent` from the text of a robots.txt (`base_url` resolves relative
    Sitemap lines)."""
    renamed, group = _rename_agents(text[:PARSE_LIMIT].lstrip("\ufeff"), product_token(user_agent))
    parsed = Protego.parse(renamed)
    return RobotsRules(parsed, parsed.crawl_delay(_US),
                       [urljoin(base_url, url) for url in parsed.sitemaps], group)


def origin_of(url: str) -> str | None:
    """scheme://host[:port] with the default port left out, or None for a non-http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or port == {"http": 80, "https": 443}[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def rules_from_fetch(result: FetchResult, user_agent: str) -> RobotsRules:
    """RFC 9309's reading of a robots.txt fetch (see the module docstring)."""
    where = result.url
    if result.failure:
        if result.failure[0] == "too_many_redirects":  # RFC 9309 2.3.1.2: MAY be unavailable
            return RobotsRules(source="too many redirects: crawl all")
        return RobotsRules(unavailable=("robots_unavailable",
                                        f"{where}: {result.failure[0]}: {result.failure[1]}"),
                           source=f"{result.failure[0]}: crawl nothing")
    status = result.status or 0
    if 200 <= status < 300:
        text = result.body[:PARSE_LIMIT].decode("utf-8", errors="replace")
        return parse_robots(text, user_agent, result.final_url)
    if 400 <= status < 500 and status != 429:
        return RobotsRules(source=f"status {status}: crawl all")
    return RobotsRules(unavailable=("robots_unavailable", f"{where} answered {status}"),
                       source=f"status {status}: crawl nothing")


class RobotsCache:
    """robots.txt verdicts for many origins, each fetched once (while it stays in the cache).

    `fetch(url) -> FetchResult` is the safe fetcher (e.g. `Fetcher(policy).fetch`, whose policy
    should allow at least 5 redirects): robots.txt goes through the same address guard, caps and
    deadline as pages. `on_fetch(origin, result)` is told of every robots.txt fetch (to archive it
    in WARC, count it). The cache keeps the `max_origins` most recently used origins; one evicted
    and asked about again is fetched again.

    Not thread-safe: one instance per worker thread (Beam builds one per DoFn instance in setup).
    Concurrent use could fetch an origin's robots.txt twice, nothing worse, but is not supported.
    """

    def __init__(self, fetch: Callable[[str], FetchResult], user_agent: str, *,
                 max_origins: int = 100_000,
                 on_fetch: Callable[[str, FetchResult], None] | None = None):
        self._fetch, self.user_agent = fetch, user_agent
        self._max, self._on_fetch = max_origins, on_fetch
        self._cache: OrderedDict[str, RobotsRules] = OrderedDict()

    def rules(self, url_or_origin: str) -> RobotsRules | None:
        """The RobotsRules of the URL's origin, fetching robots.txt the first time; None for a
        URL that has no http(s) origin."""
        origin = origin_of(url_or_origin)
        if origin is None:
            return None
        rules = self._cache.get(origin)
        if rules is None:
            result = self._fetch(origin + "/robots.txt")
            if self._on_fetch:
                self._on_fetch(origin, result)
            rules = rules_from_fetch(result, self.user_agent)
            self._cache[origin] = rules
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(origin)
        return rules

    def allowed(self, url: str) -> tuple[bool, tuple[str, str] | None]:
        """(True, None), or (False, (reason, detail)) with reason `robots_disallowed`,
        `robots_unavailable` or `bad_url` (not an http(s) URL)."""
        rules = self.rules(url)
        if rules is None:
            return False, ("bad_url", f"{url}: no http(s) origin")
        return rules.allowed(url)

    def crawl_delay(self, url_or_origin: str) -> float | None:
        """The Crawl-delay (seconds) robots.txt asks of this crawler, or None. Unbounded: the
        crawler should cap it."""
        rules = self.rules(url_or_origin)
        return rules.crawl_delay if rules else None

    def sitemaps(self, url_or_origin: str) -> list[str]:
        """The Sitemap URLs robots.txt lists (absolute), in file order."""
        rules = self.rules(url_or_origin)
        return list(rules.sitemaps) if rules else []

    def __len__(self) -> int:
        return len(self._cache)
