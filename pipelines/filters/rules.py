"""The simple rules that run before the published rule sets: a URL blocklist, a minimum length
and a minimum share of letters (settings in `QualityConfig`)."""

from __future__ import annotations

from typing import Iterable
from urllib.parse import urlsplit

from pipelines.filters.base import DocumentFilter, stats
from schemas.config import QualityConfig


class MinLength(DocumentFilter):
    """Pages under `min_chars` characters ("Coming soon.") say nothing."""

    name = "too_short"
    reasons = ("too_short",)

    def __init__(self, config: QualityConfig):
        self.min_chars = config.min_chars
        self.off = frozenset(config.off_rules)

    def filter(self, doc):
        return self.rule("too_short", stats(doc).n_chars, "<", self.min_chars) or True


class AlphaRatio(DocumentFilter):
    """Tables of symbols and numbers: too few letters (letters *and marks*, so that Indic vowel
    signs and viramas count) among non-space characters, under `min_alpha_ratio`."""

    name = "low_alpha_ratio"
    reasons = ("low_alpha_ratio",)

    def __init__(self, config: QualityConfig):
        self.min_ratio = config.min_alpha_ratio
        self.off = frozenset(config.off_rules)

    def filter(self, doc):
        return self.rule("low_alpha_ratio", stats(doc).alpha_ratio, "<", self.min_ratio) or True


def _host_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url if "//" in url else "//" + url)
    host = (parts.hostname or "").rstrip(".").removeprefix("www.")
    return host, parts.path.rstrip("/")


class URLBlocklist(DocumentFilter):
    """Blocks documents by URL. Entries are domains (block the domain and all its subdomains)
    or URLs (block that URL and everything under its path); scheme, "www." and case are
    ignored. Documents without a URL are kept."""

    name = "blocked_url"
    reasons = ("blocked_url",)

    def __init__(self, entries: Iterable[str]):
        self.domains, self.urls = set(), set()
        for entry in entries:
            entry = entry.split("#", 1)[0].strip().lower()
            if not entry:
                continue
            host, path = _host_and_path(entry)
            if path:
                self.urls.add((host, path))
            else:
                self.domains.add(host)

    @classmethod
    def from_file(cls, path: str) -> "URLBlocklist":
        """One domain or URL per line; `#` starts a comment."""
        with open(path, encoding="utf-8") as f:
            return cls(f)

    def filter(self, doc):
        url = doc.get("url")
        try:
            host, path = _host_and_path(url.lower()) if url else ("", "")
        except ValueError:  # not a URL (e.g. a broken IPv6 host): nothing to match
            return True
        labels = host.split(".")
        for i in range(len(labels)):
            if ".".join(labels[i:]) in self.domains:
                return False, "blocked_url", ".".join(labels[i:])
        segments = path.split("/")
        for i in range(len(segments), 0, -1):
            if (host, "/".join(segments[:i])) in self.urls:
                return False, "blocked_url", host + "/".join(segments[:i])
        return True
