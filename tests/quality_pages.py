"""Real texts for the quality-model tests and bench: the 80 pages of ../shared/data/extraction
cut into article prose (paragraphs of 200 characters or more outside page furniture) and page
furniture (navigation, header, footer, side and list blocks whose text is mostly links, three
links or more: one text of their link texts, a line each). lxml alone: 80 pages in a second."""

from __future__ import annotations

from pathlib import Path

import lxml.html

FURNITURE = ("nav", "header", "footer", "aside", "ul", "ol", "menu", "select")
MIN_PROSE_CHARS = 200


def _inside_furniture(element) -> bool:
    return any(parent.tag in FURNITURE for parent in element.iterancestors())


def page_texts(path: Path) -> tuple[list[str], list[str]]:
    """(prose paragraphs, furniture blocks) of one HTML page."""
    doc = lxml.html.fromstring(path.read_bytes())
    for code in list(doc.iter("script", "style", "noscript")):
        code.drop_tree()
    prose = [text for p in doc.iter("p") if not _inside_furniture(p)
             for text in [" ".join(p.text_content().split())] if len(text) >= MIN_PROSE_CHARS]
    furniture = []
    for block in doc.iter(*FURNITURE):
        if _inside_furniture(block):
            continue
        links = [t for a in block.iter("a") for t in [" ".join(a.text_content().split())] if t]
        if len(links) >= 3 and sum(map(len, links)) >= 0.6 * len(" ".join(
                block.text_content().split())):
            furniture.append("\n".join(links))
    return prose, furniture


def prose_and_furniture(html_dir: Path) -> tuple[list[str], list[str]]:
    """Every page's prose and furniture, pages in name order."""
    prose, furniture = [], []
    for path in sorted(html_dir.glob("*.html")):
        p, f = page_texts(path)
        prose += p
        furniture += f
    return prose, furniture
