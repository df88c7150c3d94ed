"""The demo's generated site: deterministic, truthful, and served over real HTTP."""

import xml.etree.ElementTree as ET

import requests
import trafilatura

from flows.sample_site import generate_site, serve_site
from pipelines.dedup.stage import hasher
from pipelines.filters.langid import LanguageIdentifier
from schemas.config import DedupConfig, LangIdConfig


def test_generation_is_deterministic(tmp_path):
    a = generate_site(tmp_path / "a", seed=3)
    b = generate_site(tmp_path / "b", seed=3)
    c = generate_site(tmp_path / "c", seed=4)
    assert a == b and c != a
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a/en/article-0.html").read_bytes() != \
        (tmp_path / "c/en/article-0.html").read_bytes()


def test_planted_truth_holds(tmp_path):
    truth = generate_site(tmp_path, seed=0)
    lid = LanguageIdentifier(LangIdConfig())
    texts = {}
    for page in truth.pages:
        if page.kind == "junk":
            continue
        text = trafilatura.extract((tmp_path / page.path.lstrip("/")).read_bytes(),
                                   favor_precision=True, include_comments=False,
                                   include_tables=False)
        texts[page.path] = text
        assert lid.predict([text])[0][0] == page.lang, page.path
        assert all(m in text for m in page.main_text_markers), page.path
        assert not any(m in text for m in page.boilerplate_markers), page.path
    config = DedupConfig()
    signatures = hasher(config).signatures(list(texts.values()))
    sig = dict(zip(texts, signatures))
    for page in truth.pages_of("exact_dup"):
        assert texts[page.path] == texts[page.dup_of]
    for page in truth.pages_of("near_dup"):
        assert texts[page.path] != texts[page.dup_of]
        assert (sig[page.path] == sig[page.dup_of]).mean() >= 0.75, page.path
    unrelated = truth.pages_of("unique")
    for i, a in enumerate(unrelated):
        for b in unrelated[i + 1:]:
            assert (sig[a.path] == sig[b.path]).mean() < 0.3, (a.path, b.path)


def test_server_serves_pages_robots_and_sitemap(tmp_path):
    truth = generate_site(tmp_path, seed=0)
    with serve_site(tmp_path) as base:
        assert base.startswith("http://127.0.0.1:")
        assert requests.get(f"{base}/en/article-0.html", timeout=5).status_code == 200
        assert requests.get(f"{base}/junk/missing.html", timeout=5).status_code == 404
        assert requests.get(f"{base}/truth.json", timeout=5).status_code == 404
        pdf = requests.get(f"{base}/files/brochure.pdf", timeout=5)
        assert pdf.headers["Content-Type"] == "application/pdf"
        robots = requests.get(f"{base}/robots.txt", timeout=5).text
        assert "Disallow: /private/" in robots and f"Sitemap: {base}/sitemap.xml" in robots
        tree = ET.fromstring(requests.get(f"{base}/sitemap.xml", timeout=5).content)
        locs = [el.text for el in tree.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
        assert sorted(locs) == sorted(f"{base}{p.path}" for p in truth.pages)


def test_a_taken_port_falls_back_to_a_free_one_with_a_note(tmp_path):
    generate_site(tmp_path, seed=0)
    notes = []
    with serve_site(tmp_path, port=0) as first:
        taken = int(first.rsplit(":", 1)[1])
        with serve_site(tmp_path, port=taken, log=notes.append) as second:
            assert second != first
            assert requests.get(f"{second}/robots.txt", timeout=5).status_code == 200
    assert len(notes) == 1 and f"port {taken} unavailable" in notes[0]
