"""A page's title, author, publication date and site name, read from what the page declares.

trafilatura's own metadata pass (htmldate's search through the whole page, JSON-LD, meta tags,
author heuristics) was 37% of the extract stage's CPU (profiled: `bench/extraction_quality.py`).
Publishers declare these fields in a few standard places (Open Graph, `article:*`, Dublin Core,
schema.org JSON-LD and microdata, `<time>`, the URL), so reading those is enough and costs about a
millisecond. Main-text extraction itself is the extractor's (trafilatura or resiliparse).

The rules below read a page through a `Page`: the handful of things they look at (meta tags,
JSON-LD blocks, the first `<h1>`, `<title>`, `rel=author`, dated elements). `LxmlPage` reads
the lxml tree trafilatura parses, `LexborPage` the tree resiliparse parses, so each extractor
parses a page once and both fill the same columns by the same rules.
"""

from __future__ import annotations

import json
import re
from typing import Iterator

from resiliparse.parse.html import NodeType

_DATE = re.compile(r"((?:19|20)\d\d)[-/.]?(0[1-9]|1[0-2])[-/.]?(0[1-9]|[12]\d|3[01])")
_URL_DATE = re.compile(r"/((?:19|20)\d\d)/(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])(?:/|$)")
_TITLE_SEPARATORS = re.compile(r"\s+[|–—·•:-]\s+")
_SPACE = re.compile(r"\s+")

TITLE_META = ("og:title", "twitter:title", "dc.title", "title", "headline")
AUTHOR_META = ("author", "article:author", "dc.creator", "dcterms.creator", "byl",
               "sailthru.author", "parsely-author", "twitter:creator")
DATE_META = ("article:published_time", "og:published_time", "datepublished", "date",
             "dc.date", "dc.date.issued", "dcterms.date", "dcterms.issued", "pubdate",
             "publishdate", "publication_date", "sailthru.date", "parsely-pub-date",
             "article.published", "published-date", "og:updated_time", "article:modified_time",
             "datemodified", "last-modified")
SITE_META = ("og:site_name", "application-name", "twitter:site", "dc.publisher", "publisher")


def _clean(text) -> str | None:
    if not isinstance(text, str):
        return None
    text = _SPACE.sub(" ", text).strip()
    return text or None


def _iso_date(text: str | None) -> str | None:
    if not text:
        return None
    match = _DATE.search(text)
    return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else None


class Page:
    """What the metadata rules read of a parsed page."""

    def metas(self) -> Iterator[tuple[str | None, str | None]]:
        """(`property` or `name` or `itemprop`, `content`) of every `<meta>`, in page order."""
        raise NotImplementedError

    def scripts(self) -> Iterator[tuple[str | None, str | None]]:
        """(`type`, text) of every `<script>`, in page order."""
        raise NotImplementedError

    def first_text(self, what: str) -> str:
        """The text nodes, joined by spaces, of the first `h1` or `rel_author` element."""
        raise NotImplementedError

    def title_texts(self) -> list[str]:
        """The text nodes of the `<title>` elements."""
        raise NotImplementedError

    def dated(self) -> Iterator[tuple[str | None, str]]:
        """(`datetime` or `content`, text) of `<time datetime>` and `itemprop=datePublished`."""
        raise NotImplementedError

    def for_htmldate(self):
        """What htmldate's `find_date` reads: an lxml tree or the HTML text."""
        raise NotImplementedError


class LxmlPage(Page):
    """An lxml tree (what trafilatura's `load_html` returns)."""

    def __init__(self, tree):
        self.tree = tree

    def metas(self):
        for node in self.tree.iter("meta"):
            yield (node.get("property") or node.get("name") or node.get("itemprop"),
                   node.get("content"))

    def scripts(self):
        for node in self.tree.iter("script"):
            yield node.get("type"), node.text

    def first_text(self, what):
        path = {"h1": "(//h1)[1]//text()", "rel_author": "(//*[@rel='author'])[1]//text()"}
        return " ".join(self.tree.xpath(path[what]))

    def title_texts(self):
        return self.tree.xpath("//title/text()")

    def dated(self):
        for node in self.tree.xpath("//time[@datetime] | //*[@itemprop='datePublished']"):
            yield node.get("datetime") or node.get("content"), node.text_content()

    def for_htmldate(self):
        return self.tree


class LexborPage(Page):
    """A resiliparse `HTMLTree` (lexbor's DOM) and the HTML text it was parsed from."""

    SELECTORS = {"h1": "h1", "rel_author": "[rel=author]"}

    def __init__(self, tree, html: str):
        self.root, self.html = tree.document, html

    def _all(self, selector: str):
        if self.root is None:
            return ()
        # one slice: indexing or iterating resiliparse 2.0's node list costs 25-150 us a node
        return self.root.query_selector_all(selector)[:]

    def metas(self):
        for node in self._all("meta"):
            yield (node.get_attribute("property") or node.get_attribute("name")
                   or node.get_attribute("itemprop"), node.get_attribute("content"))

    def scripts(self):
        for node in self._all("script"):
            yield node.get_attribute("type"), node.text

    def _texts(self, node) -> list[str]:
        return [n.text for n in node if n.type == NodeType.TEXT]  # descendants, in order

    def first_text(self, what):
        node = self.root.query_selector(self.SELECTORS[what]) if self.root is not None else None
        return " ".join(self._texts(node)) if node is not None else ""

    def title_texts(self):
        return [text for node in self._all("title") for text in self._texts(node)]

    def dated(self):
        for node in self._all("time[datetime], [itemprop=datePublished]"):
            yield (node.get_attribute("datetime") or node.get_attribute("content"),
                   node.text or "")

    def for_htmldate(self):
        return self.html


def _meta(page: Page) -> dict[str, str]:
    """Lower-cased `name`/`property`/`itemprop` -> first non-empty content."""
    found: dict[str, str] = {}
    for key, content in page.metas():
        value = _clean(content)
        if key and value:
            found.setdefault(key.strip().lower(), value)
    return found


def _json_ld(page: Page) -> list[dict]:
    """The schema.org objects of the page's JSON-LD blocks (graphs flattened)."""
    objects: list[dict] = []
    for kind, text in page.scripts():
        if (kind or "").strip().lower() != "application/ld+json" or not text:
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            elif isinstance(item, dict):
                objects.append(item)
                if isinstance(item.get("@graph"), list):
                    stack.extend(reversed(item["@graph"]))
    return objects


def _name(value) -> str | None:
    """A JSON-LD person or organisation (or a list of them) as a display name."""
    if isinstance(value, list):
        names = [n for n in (_name(v) for v in value) if n]
        return "; ".join(dict.fromkeys(names)) or None
    if isinstance(value, dict):
        return _clean(value.get("name"))
    return _clean(value)


def _first(*values):
    return next((v for v in values if v), None)


def _title(page: Page, meta: dict, ld: list[dict]) -> str | None:
    h1 = _clean(page.first_text("h1"))
    titles = page.title_texts()
    page_title = _clean(titles[0]) if titles else None
    if page_title:
        parts = [p for p in _TITLE_SEPARATORS.split(page_title) if p.strip()]
        if len(parts) > 1:  # "Headline | Site": the part the h1 repeats, else the longest
            page_title = next((p for p in parts if h1 and p.strip() in h1), None) or \
                max(parts, key=len)
    declared = _first(*(meta.get(k) for k in TITLE_META),
                      *(_clean(o.get("headline")) for o in ld))
    return _first(declared, page_title, h1)


def _author(page: Page, meta: dict, ld: list[dict]) -> str | None:
    for key in AUTHOR_META:
        value = meta.get(key)
        if value and not value.startswith(("http://", "https://", "@")):
            return value
    for obj in ld:
        name = _name(obj.get("author")) or _name(obj.get("creator"))
        if name:
            return name
    return _clean(page.first_text("rel_author"))


def _date(page: Page, meta: dict, ld: list[dict], url: str | None) -> str | None:
    for key in DATE_META:
        date = _iso_date(meta.get(key))
        if date:
            return date
    for obj in ld:
        for key in ("datePublished", "dateCreated", "uploadDate", "dateModified"):
            date = _iso_date(obj.get(key) if isinstance(obj.get(key), str) else None)
            if date:
                return date
    for value, text in page.dated():
        date = _iso_date(value or text)
        if date:
            return date
    match = _URL_DATE.search(url or "")
    return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else None


def _sitename(meta: dict, ld: list[dict]) -> str | None:
    for key in SITE_META:
        value = meta.get(key)
        if value and not value.startswith(("http://", "https://")):
            return value.lstrip("@") if key == "twitter:site" else value
    for obj in ld:
        if obj.get("@type") in ("WebSite", "Organization", "NewsMediaOrganization"):
            name = _clean(obj.get("name"))
            if name:
                return name
        name = _name(obj.get("publisher"))
        if name:
            return name
    return None


def _found_date(page: Page, url: str | None) -> str | None:
    """A page that declares no date often prints one ("14.01.2020", "Jan 14, 2020"): htmldate's
    quick search (markup and common patterns, not its extensive scan) finds most of those."""
    from htmldate import find_date  # (its log is silenced in the extraction child)

    try:
        return _iso_date(find_date(page.for_htmldate(), url=url, original_date=True,
                                   extensive_search=False))
    except Exception:  # a date is a nicety: never a reason to lose the page
        return None


def page_metadata(page: Page, url: str | None = None) -> dict:
    """title, author, date (YYYY-MM-DD) and sitename of a parsed page; None where the page
    declares nothing."""
    meta, ld = _meta(page), _json_ld(page)
    return {"title": _title(page, meta, ld), "author": _author(page, meta, ld),
            "date": _date(page, meta, ld, url) or _found_date(page, url),
            "sitename": _sitename(meta, ld)}
