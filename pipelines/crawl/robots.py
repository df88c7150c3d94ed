"""robots.txt for the crawler: fetched once per origin through the safe fetcher, read by RFC 9309.

Why not `urllib.robotparser`: it applies the first matching rule where RFC 9309 wants the longest
(so "Disallow: /" then "Allow: /public" blocks /public), knows no `*` or `$` wildcards, and
fetches with urllib, past our address guard and limits. `protego` would do, but it is not a
dependency. The parser here is the RFC's matching, in a few dozen lines:

- groups start at `User-agent` lines; the crawler obeys the groups whose agent equals its product
  token (case-insensitive, the token being the user agent up to the first "/" or space), all of
  them merged; else the `*` groups merged; else nothing is disallowed;
- the rule with the longest pattern matching the path (query included) decides, `Allow` winning a
  tie; `*` matches any run of characters, a final `$` anchors at the end; an empty `Disallow`
  allows; /robots.txt itself is always allowed;
- paths and patterns are compared with percent-encoding normalised (unreserved characters
  decoded, non-ASCII encoded as UTF-8, hex upper-cased);
- `Crawl-delay` (not in the RFC, widely used) is read from the chosen group; `Sitemap` lines from
  anywhere.

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
from urllib.parse import quote, urljoin, urlsplit

from pipelines.crawl.fetcher import FetchResult

PARSE_LIMIT = 512 * 1024  # RFC 9309: at least 500 KiB must be parsed; the rest is ignored
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normalise(path: str) -> str:
    """One spelling for equivalent paths: %41 -> A, %2f -> %2F, "é" -> %C3%A9, " " -> %20."""
    def escape(match):
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()
    path = _ESCAPE.sub(escape, path)
    return quote(path, safe="/?:@!$&'()*+,;=%[]#")


def product_token(user_agent: str) -> str:
    """The name robots.txt groups are matched against: "corpus-builder/0.1 (+url)" becomes
    "corpus-builder"."""
    return re.split(r"[/\s]", user_agent.strip(), maxsplit=1)[0].lower()


@dataclass(frozen=True)
class Rule:
    allow: bool
    pattern: str  # normalised

    def matches(self, path: str) -> bool:
        return _compiled(self.pattern).match(path) is not None


_REGEX_CACHE: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    regex = _REGEX_CACHE.get(pattern)
    if regex is None:
        anchored = pattern.endswith("$")
        body = pattern[:-1] if anchored else pattern
        text = ".*".join(re.escape(part) for part in re.sub(r"\*+", "*", body).split("*"))
        regex = re.compile(text + (r"\Z" if anchored else ""), re.DOTALL)
        if len(_REGEX_CACHE) < 10_000:
            _REGEX_CACHE[pattern] = regex
    return regex


@dataclass
class RobotsRules:
    """The rules of one robots.txt for one user agent, or a blanket verdict."""

    rules: list[Rule] = field(default_factory=list)
    crawl_delay: float | None = None
    sitemaps: list[str] = field(default_factory=list)
    group: str = ""  # which group applies: the product token, "*", or "" (none)
    unavailable: tuple[str, str] | None = None  # set: nothing may be crawled, for this reason
    source: str = "parsed"  # how the verdict came about, for logs and stats

    def allowed(self, url: str) -> tuple[bool, tuple[str, str] | None]:
        if self.unavailable:
            return False, self.unavailable
        parts = urlsplit(url)
        path = _normalise((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        if path == "/robots.txt":
            return True, None
        best = None
        for rule in self.rules:
            if rule.matches(path) and (best is None or len(rule.pattern) > len(best.pattern)
                                       or (len(rule.pattern) == len(best.pattern) and rule.allow)):
                best = rule
        if best is None or best.allow:
            return True, None
        return False, ("robots_disallowed", f"Disallow: {best.pattern} (group {self.group})")


def parse_robots(text: str, user_agent: str, base_url: str = "") -> RobotsRules:
    """RobotsRules for `user_agent` from the text of a robots.txt (`base_url` resolves relative
    Sitemap lines)."""
    token = product_token(user_agent)
    groups: list[tuple[list[str], list[Rule], list[float]]] = []
    sitemaps: list[str] = []
    current, in_agents = None, False
    for raw in text[:PARSE_LIMIT].lstrip("\ufeff").splitlines():
        key, sep, value = raw.split("#", 1)[0].partition(":")
        key, value = key.strip().lower().replace(" ", "-").replace("_", "-"), value.strip()
        if not sep:
            continue
        if key in ("user-agent", "useragent"):
            if not in_agents:
                current = ([], [], [])
                groups.append(current)
                in_agents = True
            current[0].append(product_token(value) if value != "*" else "*")
            continue
        if key in ("allow", "disallow", "crawl-delay"):
            in_agents = False  # a User-agent line after these starts the next group
        if key == "sitemap" and value:
            sitemaps.append(urljoin(base_url, value))
        elif current is None:
            continue  # rules before any User-agent belong to no group
        elif key in ("allow", "disallow") and value:
            pattern = value if value.startswith(("/", "*")) else "/" + value
            current[1].append(Rule(key == "allow", _normalise(pattern)))
        elif key == "crawl-delay":
            try:
                delay = float(value)
            except ValueError:
                continue
            if delay >= 0 and delay == delay and delay != float("inf"):
                current[2].append(delay)
    for name in (token, "*"):
        chosen = [g for g in groups if name in g[0]]
        if chosen:
            delays = [d for g in chosen for d in g[2]]
            return RobotsRules([r for g in chosen for r in g[1]], delays[0] if delays else None,
                               sitemaps, name)
    return RobotsRules(sitemaps=sitemaps)


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
