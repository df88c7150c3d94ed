"""The demo's input: a small multilingual web site that knows the truth it planted, and a local
HTTP server for it.

`generate_site` writes static pages in six languages (Faker's locale word lists) with planted
exact duplicates, near-duplicates (one sentence changed), boilerplate-heavy pages and junk, plus
`truth.json`. `serve_site` serves them on 127.0.0.1, rendering `robots.txt` and `sitemap.xml`
with its real address (the port is only known once it listens).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import mimetypes
import threading
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from faker import Faker

LOCALES = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "ru": "ru_RU", "zh": "zh_CN",
           "ja": "ja_JP"}
TRUTH_FILE = "truth.json"
# A minimal valid PDF: the scraper archives it, the extractor rejects it as not HTML.
PDF_BYTES = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]"
             b"/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


@dataclass
class PageTruth:
    path: str
    kind: str  # unique, exact_dup, near_dup, boilerplate, junk
    lang: str | None = None
    title: str | None = None
    dup_of: str | None = None
    main_text_markers: list[str] = field(default_factory=list)
    boilerplate_markers: list[str] = field(default_factory=list)
    expect_reject_stage: str | None = None  # for junk: scrape, extract or filter
    content_type: str = "text/html; charset=utf-8"
    status: int = 200


@dataclass
class SiteTruth:
    seed: int
    pages: list[PageTruth]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "SiteTruth":
        data = json.loads(text)
        return cls(seed=data["seed"], pages=[PageTruth(**p) for p in data["pages"]])

    @classmethod
    def load(cls, root: Path) -> "SiteTruth":
        return cls.from_json((Path(root) / TRUTH_FILE).read_text(encoding="utf-8"))

    def pages_of(self, kind: str) -> list[PageTruth]:
        return [p for p in self.pages if p.kind == kind]

    def languages(self) -> list[str]:
        return sorted({p.lang for p in self.pages if p.lang})

    def expected_kept_paths(self) -> list[str]:
        """Pages that must survive: unique and boilerplate pages (originals of every dup)."""
        return sorted(p.path for p in self.pages if p.kind in ("unique", "boilerplate"))


def chrome(title: str, body: str, heavy: list[str] | None = None,
           head_title: str | None = None) -> str:
    """A whole HTML page: header nav, the main article, a footer; `heavy` adds boilerplate."""
    nav = "".join(f'<li><a href="/{lang}/">{lang.upper()}</a></li>' for lang in LOCALES)
    extra_top = extra_bottom = ""
    if heavy:
        cookie, menu, sidebar, related, footer = heavy
        links = "".join(f'<li><a href="/category/{i}">{html.escape(menu)} {i}</a></li>'
                        for i in range(25))
        extra_top = (f'<div class="cookie-banner" id="cookie-consent"><p>{html.escape(cookie)}</p>'
                     f'<button>Accept all</button></div><nav class="mega-menu"><ul>{links}</ul></nav>')
        side = "".join(f'<li><a href="/tag/{i}">{html.escape(sidebar)} #{i}</a></li>'
                       for i in range(20))
        rel = "".join(f'<li><a href="/related/{i}">{html.escape(related)} ({i})</a></li>'
                      for i in range(12))
        extra_bottom = (f'<aside class="sidebar"><ul>{side}</ul></aside>'
                        f'<div class="related-links"><h3>Related</h3><ul>{rel}</ul></div>'
                        f'<footer class="site-footer"><p>{html.escape(footer)}</p>'
                        f'<ul>{links}</ul></footer>')
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8">'
            f'<title>{html.escape(head_title or title)}'
            f'</title></head><body>{extra_top}<header><nav><ul><li><a href="/">Home</a></li>'
            f'{nav}</ul></nav></header><main><article><h1>{html.escape(title)}</h1>{body}'
            f'</article></main>{extra_bottom}<footer><p>Example Site - all rights reserved.'
            f'</p></footer></body></html>')


def paragraphs_html(paragraphs: list[list[str]]) -> str:
    return "".join("<p>" + html.escape(" ".join(p)) + "</p>" for p in paragraphs)


def sentence(fake: Faker) -> str:
    """A ten-word sentence of the locale's words. English gets its function words between them,
    as real English has: Gopher's quality rule drops English pages without "the", "of", "and"."""
    if fake.locales[0] != "en_US":
        return fake.sentence(nb_words=10)
    w = fake.words(nb=7)
    return f"The {w[0]} {w[1]} of the {w[2]} and {w[3]} {w[4]} to {w[5]} with {w[6]}."


def article(fake: Faker, n_paragraphs: int = 4, n_sentences: int = 4) -> list[list[str]]:
    return [[sentence(fake) for _ in range(n_sentences)] for _ in range(n_paragraphs)]


def generate_site(root: Path, seed: int = 0, pages_per_lang: int = 6) -> SiteTruth:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    pages: list[PageTruth] = []
    articles: dict[str, tuple[str, list[list[str]]]] = {}

    def write(path: str, content: str | bytes) -> None:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))

    fakers = {}
    for n, (lang, locale) in enumerate(LOCALES.items()):
        fake = Faker(locale)
        fake.seed_instance(seed * 1000 + n)
        fakers[lang] = fake
        for i in range(pages_per_lang):
            title = fake.sentence(nb_words=5).rstrip(".")
            paras = article(fake)
            path = f"/{lang}/article-{i}.html"
            articles[path] = (title, paras)
            write(path, chrome(title, paragraphs_html(paras)))
            pages.append(PageTruth(path, "unique", lang, title,
                                   main_text_markers=[paras[0][0], paras[-1][-1]]))

    # Exact duplicates: the same article under another URL and title.
    for lang, i in (("en", 0), ("de", 1), ("ja", 2)):
        original = f"/{lang}/article-{i % pages_per_lang}.html"
        title, paras = articles[original]
        path = f"/mirror/{lang}-copy-{i}.html"
        write(path, chrome(title, paragraphs_html(paras), head_title=f"Mirror: {title}"))
        pages.append(PageTruth(path, "exact_dup", lang, title, dup_of=original,
                               main_text_markers=[paras[0][0]]))

    # Near duplicates: one sentence of the last paragraph replaced.
    for lang, i in (("fr", 0), ("ru", 1), ("zh", 2)):
        original = f"/{lang}/article-{i % pages_per_lang}.html"
        title, paras = articles[original]
        changed = [list(p) for p in paras]
        changed[-1][1] = sentence(fakers[lang])
        path = f"/syndicated/{lang}-{i}.html"
        write(path, chrome(title, paragraphs_html(changed)))
        pages.append(PageTruth(path, "near_dup", lang, title, dup_of=original,
                               main_text_markers=[changed[0][0]]))

    # Boilerplate-heavy pages: a real article inside a lot of site chrome.
    for lang in ("en", "de"):
        fake = fakers[lang]
        title = fake.sentence(nb_words=5).rstrip(".")
        paras = article(fake)
        markers = [f"We use cookies to improve your experience ({lang}-cookie-notice)",
                   f"Shop all categories ({lang}-mega-menu)",
                   f"Trending tag ({lang}-sidebar-tags)",
                   f"You may also like ({lang}-related-links)",
                   f"Subscribe to the newsletter for weekly offers ({lang}-footer-newsletter)"]
        path = f"/{lang}/feature.html"
        write(path, chrome(title, paragraphs_html(paras), heavy=markers))
        pages.append(PageTruth(path, "boilerplate", lang, title, boilerplate_markers=markers,
                               main_text_markers=[paras[0][0], paras[-1][-1]]))

    # Junk the pipeline must drop, with the stage expected to drop it.
    write("/junk/coming-soon.html", chrome("Coming soon", "<p>Coming soon.</p>"))
    pages.append(PageTruth("/junk/coming-soon.html", "junk", expect_reject_stage="filter"))
    symbols = "".join(f"<p>{' '.join(f'#{n:04d} $$ %% ++ {n * 7} // ==' for n in range(r * 9, r * 9 + 9))}</p>"
                      for r in range(12))
    write("/junk/price-table.html", chrome("1234 5678", symbols))
    pages.append(PageTruth("/junk/price-table.html", "junk", expect_reject_stage="filter"))
    spam = "".join("<p>Best cheap watches online, buy now and save big today!</p>"
                   for _ in range(30))
    write("/junk/spam.html", chrome("Cheap watches", spam))
    pages.append(PageTruth("/junk/spam.html", "junk", expect_reject_stage="filter"))
    pages.append(PageTruth("/junk/missing.html", "junk", expect_reject_stage="extract",
                           status=404))  # listed in the sitemap, never written
    write("/private/members.html", chrome("Members", paragraphs_html(article(fakers["en"]))))
    pages.append(PageTruth("/private/members.html", "junk", "en",
                           expect_reject_stage="scrape"))  # robots.txt disallows /private/
    write("/files/brochure.pdf", PDF_BYTES)
    pages.append(PageTruth("/files/brochure.pdf", "junk", expect_reject_stage="extract",
                           content_type="application/pdf"))

    index = "".join(f'<li><a href="{p.path}">{html.escape(p.title or p.path)}</a></li>'
                    for p in pages)
    write("/index.html", chrome("Example Site", f"<ul>{index}</ul>"))
    truth = SiteTruth(seed=seed, pages=sorted(pages, key=lambda p: p.path))
    (root / TRUTH_FILE).write_text(truth.to_json(), encoding="utf-8")
    return truth


def _handler(root: Path, truth: SiteTruth):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, ctype: str) -> None:
            # an ETag, and 304 to a request that holds it: what a refresh crawl meets on the web
            etag = '"%s"' % hashlib.sha1(body).hexdigest()[:16]
            if status == 200 and etag in self.headers.get("If-None-Match", ""):
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if status == 200:
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            base = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
            path = self.path.split("?", 1)[0]
            if path == "/robots.txt":
                text = f"User-agent: *\nDisallow: /private/\n\nSitemap: {base}/sitemap.xml\n"
                return self._send(200, text.encode(), "text/plain; charset=utf-8")
            if path == "/sitemap.xml":
                urls = "".join(f"<url><loc>{base}{p.path}</loc></url>"
                               for p in sorted(truth.pages, key=lambda p: p.path))
                xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.'
                       f'sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>\n')
                return self._send(200, xml.encode(), "application/xml")
            if path == "/":
                path = "/index.html"
            target = (root / path.lstrip("/")).resolve()
            if (path.endswith(TRUTH_FILE) or not target.is_file()
                    or root.resolve() not in target.parents):
                return self._send(404, b"<html><body>Not found</body></html>",
                                  "text/html; charset=utf-8")
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if ctype.startswith("text/"):
                ctype += "; charset=utf-8"
            return self._send(200, target.read_bytes(), ctype)

        def log_message(self, *args):
            pass

    return Handler


@contextlib.contextmanager
def serve_site(root: Path, port: int = 0, log=print):
    """Serve a generated site on 127.0.0.1; yields the base URL. `port` 0 takes a free port; a
    fixed port that is taken falls back to a free one, with a note."""
    root = Path(root)
    handler = _handler(root, SiteTruth.load(root))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        if not port:
            raise
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        log(f"demo: port {port} unavailable ({err.strerror}); serving on "
            f"{server.server_address[1]} instead, so URLs and document ids differ from a run "
            f"on {port}")
    thread = threading.Thread(target=server.serve_forever, name="sample-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
