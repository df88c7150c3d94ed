"""A page's title, author, publication date and site name, read from what the page declares.

trafilatura's own metadata pass (htmldate's search through the whole page, JSON-LD, meta tags,
author heuristics) was 37% of the extract stage's CPU (profiled: `bench/extraction_quality.py`).
Publishers declare these fields in a few standard places (Open Graph, `article:*`, Dublin Core,
schema.org JSON-LD and microdata, `<time>`, the URL), so reading those is enough and costs about a
millisecond. Main-text extraction itself stays with trafilatura.
"""

from __future__ import annotations

import json
import re

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


def _meta(tree) -> dict[str, str]:
    """Lower-cased `name`/`property`/`itemprop` -> first non-empty content."""
    found: dict[str, str] = {}
    for node in tree.iter("meta"):
        key = node.get("property") or node.get("name") or node.get("itemprop")
        value = _clean(node.get("content"))
        if key and value:
            found.setdefault(key.strip().lower(), value)
    return found


def _json_ld(tree) -> list[dict]:
    """The schema.org objects of the page's JSON-LD blocks (graphs flattened)."""
    objects: list[dict] = []
    for node in tree.iter("script"):
        if (node.get("type") or "").strip().lower() != "application/ld+json" or not node.text:
            continue
        try:
            data = json.loads(node.text)
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


def _title(tree, meta: dict, ld: list[dict]) -> str | None:
    h1 = _clean(" ".join(tree.xpath("(//h1)[1]//text()")))
    titles = tree.xpath("//title/text()")
    page_title = _clean(titles[0]) if titles else None
    if page_title:
        parts = [p for p in _TITLE_SEPARATORS.split(page_title) if p.strip()]
        if len(parts) > 1:  # "Headline | Site": the part the h1 repeats, else the longest
            page_title = next((p for p in parts if h1 and p.strip() in h1), None) or \
                max(parts, key=len)
    declared = _first(*(meta.get(k) for k in TITLE_META),
                      *(_clean(o.get("headline")) for o in ld))
    return _first(declared, page_title, h1)


def _author(tree, meta: dict, ld: list[dict]) -> str | None:
    for key in AUTHOR_META:
        value = meta.get(key)
        if value and not value.startswith(("http://", "https://", "@")):
            return value
    for obj in ld:
        name = _name(obj.get("author")) or _name(obj.get("creator"))
        if name:
            return name
    rel = tree.xpath("(//*[@rel='author'])[1]//text()")
    return _clean(" ".join(rel))


def _date(tree, meta: dict, ld: list[dict], url: str | None) -> str | None:
    for key in DATE_META:
        date = _iso_date(meta.get(key))
        if date:
            return date
    for obj in ld:
        for key in ("datePublished", "dateCreated", "uploadDate", "dateModified"):
            date = _iso_date(obj.get(key) if isinstance(obj.get(key), str) else None)
            if date:
                return date
    for node in tree.xpath("//time[@datetime] | //*[@itemprop='datePublished']"):
        date = _iso_date(node.get("datetime") or node.get("content") or node.text_content())
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


def _found_date(tree, url: str | None) -> str | None:
    """A page that declares no date often prints one ("14.01.2020", "Jan 14, 2020"): htmldate's
    quick search (markup and common patterns, not its extensive scan) finds most of those."""
    from htmldate import find_date  # (its log is silenced in the extraction child)

    try:
        return _iso_date(find_date(tree, url=url, original_date=True, extensive_search=False))
    except Exception:  # a date is a nicety: never a reason to lose the page
        return None


def page_metadata(tree, url: str | None = None) -> dict:
    """title, author, date (YYYY-MM-DD) and sitename of a parsed page (lxml tree); None where
    the page declares nothing."""
    meta, ld = _meta(tree), _json_ld(tree)
    return {"title": _title(tree, meta, ld), "author": _author(tree, meta, ld),
            "date": _date(tree, meta, ld, url) or _found_date(tree, url),
            "sitename": _sitename(meta, ld)}
