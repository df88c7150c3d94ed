"""HTML extraction: charsets decoded as declared or detected, metadata kept, and a page that takes
too long is cut off without taking the worker with it."""

from pipelines.extract.html import TimedExtractor, decode_html

FRENCH = ("Ça coûte très cher à Zürich, déjà vu. Les élèves étudient à l'école française près "
          "du lac, où l'été est doux et les forêts sont vertes. ")
RUSSIAN = ("Москва является столицей России и крупнейшим городом страны. В городе много музеев, "
           "театров и парков, а жизнь здесь не останавливается ни днём, ни ночью. ")
JAPANESE = "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。多くの人が電車で通勤します。"


def page(body_text: str, head: str = "", paragraphs: int = 6) -> str:
    paras = "".join(f"<p>{body_text} ({i})</p>" for i in range(paragraphs))
    return (f"<html><head>{head}<title>Une page</title></head><body><article>{paras}"
            f"</article></body></html>")


def test_declared_charsets_are_used():
    html = page(RUSSIAN)
    text, codec = decode_html(html.encode("cp1251"), "text/html; charset=windows-1251")
    assert codec == "cp1251" and RUSSIAN in text
    meta = page(JAPANESE, head='<meta charset="Shift_JIS">')
    text, codec = decode_html(meta.encode("shift_jis"), "text/html")
    assert codec == "shift_jis" and JAPANESE in text
    legacy = page(RUSSIAN, head='<meta http-equiv="Content-Type" '
                                'content="text/html; charset=koi8-r">')
    text, codec = decode_html(legacy.encode("koi8-r"), "")
    assert codec == "koi8-r" and RUSSIAN in text


def test_undeclared_and_lying_charsets():
    text, codec = decode_html(page(FRENCH).encode("cp1252"), "")
    assert FRENCH in text and codec == "cp1252"
    # the header says UTF-8 but the bytes are windows-1252: the header is not trusted
    text, _ = decode_html(page(FRENCH).encode("cp1252"), "text/html; charset=utf-8")
    assert FRENCH in text
    # a UTF-8 byte order mark wins over everything
    text, codec = decode_html(b"\xef\xbb\xbf" + page(RUSSIAN).encode("utf-8"), "charset=latin-1")
    assert codec == "utf-8" and RUSSIAN in text
    # an unknown charset name falls through to UTF-8
    text, codec = decode_html(page(JAPANESE).encode("utf-8"), "text/html; charset=x-klingon")
    assert codec == "utf-8" and JAPANESE in text


def test_extraction_keeps_metadata_and_decodes_legacy_pages():
    head = ('<meta name="author" content="Jeanne Dupont">'
            '<meta property="og:site_name" content="Le Journal du Lac">'
            '<meta property="article:published_time" content="2023-05-17T08:00:00Z">')
    extractor = TimedExtractor(60, {"favor_precision": True})
    try:
        result = extractor.extract(page(FRENCH, head).encode("cp1252"), "http://lac.test/a",
                                   "text/html")
    finally:
        extractor.close()
    assert FRENCH.strip()[:40] in result["text"]
    assert result["title"] == "Une page"
    assert result["author"] == "Jeanne Dupont"
    assert result["sitename"] == "Le Journal du Lac"
    assert result["date"] == "2023-05-17"


def test_a_page_over_the_time_limit_is_cut_off_and_the_next_page_extracts():
    # about 5 MB of nested markup: trafilatura needs seconds for it (3.7 s here), far over 1 s
    slow = ("<html><body>" + "".join(
        f"<div><p>Paragraph {i} with words and more words for the extractor.</p></div>"
        for i in range(60_000)) + "</body></html>").encode()
    extractor = TimedExtractor(1.0, {"fast": True})
    try:
        first = extractor.extract(page(FRENCH).encode(), "http://lac.test/1", "text/html")
        assert "Zürich" in first["text"]
        child = extractor.proc.pid
        try:
            extractor.extract(slow, "http://lac.test/slow", "text/html")
        except Exception as err:
            assert type(err).__name__ == "ExtractTimeout"
        else:
            raise AssertionError("a 5 MB page extracted within 1 s: the test needs a slower page")
        assert extractor.proc is None  # the stuck child was killed
        after = extractor.extract(page(RUSSIAN).encode(), "http://lac.test/2", "text/html")
        assert "Москва" in after["text"]
        assert extractor.proc.pid != child
    finally:
        extractor.close()


def test_resiliparse_fills_the_same_metadata_from_its_own_tree():
    head = ('<meta name="author" content="Jeanne Dupont">'
            '<meta property="og:site_name" content="Le Journal du Lac">'
            '<meta property="article:published_time" content="2023-05-17T08:00:00Z">')
    body = page(FRENCH, head).encode("cp1252")
    results = {}
    for name in ("trafilatura", "resiliparse"):
        extractor = TimedExtractor(60, {"extractor": name})
        try:
            results[name] = extractor.extract(body, "http://lac.test/a", "text/html")
            # what is not a page (plain text, binary bytes served as HTML) has no text
            assert extractor.extract(b"\x00\x9f\xffnot markup at all" * 50, "http://lac.test/b",
                                     "text/html") is None
        finally:
            extractor.close()
    rp = results["resiliparse"]
    assert FRENCH.strip()[:40] in rp["text"] and "Une page" not in rp["text"]
    assert rp["charset"] == "cp1252"
    for key in ("title", "author", "sitename", "date", "charset"):
        assert rp[key] == results["trafilatura"][key], key


def test_resiliparse_is_held_to_the_same_time_limit():
    # 20,000 nested <div>s: resiliparse's main-content pass is quadratic in depth (7 s here)
    slow = ("<html><body>" + "<div>" * 20_000 + "deep" + "</div>" * 20_000
            + "</body></html>").encode()
    extractor = TimedExtractor(1.0, {"extractor": "resiliparse"})
    try:
        first = extractor.extract(page(FRENCH).encode(), "http://lac.test/1", "text/html")
        assert "Zürich" in first["text"]
        child = extractor.proc.pid
        try:
            extractor.extract(slow, "http://lac.test/slow", "text/html")
        except Exception as err:
            assert type(err).__name__ == "ExtractTimeout"
        else:
            raise AssertionError("the nested page extracted within 1 s: the test needs a slower "
                                 "page")
        assert extractor.proc is None
        after = extractor.extract(page(RUSSIAN).encode(), "http://lac.test/2", "text/html")
        assert "Москва" in after["text"] and extractor.proc.pid != child
    finally:
        extractor.close()
