"""robots.txt: RFC 9309 matching on text, then the cache against real servers on 127.0.0.1."""

import time

import pytest

from pipelines.crawl.fetcher import Fetcher, FetchPolicy
from pipelines.crawl.robots import RobotsCache, origin_of, parse_robots, product_token
from tests.http_fixture import Reply, serve

UA = "corpus-builder/0.1 (+https://example.invalid/corpus)"


def allowed(text: str, path: str, user_agent: str = UA) -> bool:
    return parse_robots(text, user_agent).allowed("http://example.test" + path)[0]


# ---- parsing and matching (no network) ----------------------------------------------------------

def test_longest_match_wins_and_allow_wins_ties():
    text = "User-agent: *\nDisallow: /\nAllow: /public\nDisallow: /public/secret\nAllow: /same\n" \
           "Disallow: /same\n"
    assert not allowed(text, "/private")
    assert allowed(text, "/public/page")  # urllib.robotparser would say no: first match wins
    assert not allowed(text, "/public/secret/x")
    assert allowed(text, "/same")
    assert allowed(text, "/robots.txt")  # always


def test_wildcards_and_end_anchor():
    text = "User-agent: *\nDisallow: /*.pdf$\nDisallow: /tmp*/cache\nDisallow: /search?q=*&page\n"
    assert not allowed(text, "/docs/file.pdf")
    assert allowed(text, "/docs/file.pdf?download=1")
    assert not allowed(text, "/tmp-old/cache/x")
    assert not allowed(text, "/search?q=cats&page=2")
    assert allowed(text, "/search?q=cats")


def test_group_for_the_product_token_replaces_the_star_group():
    text = ("User-agent: *\nDisallow: /\n\n"
            "User-agent: Corpus-Builder/2.0\nUser-agent: other\nDisallow: /private\n"
            "Crawl-delay: 2.5\n\n"
            "User-agent: corpus-builder\nDisallow: /also\n")
    rules = parse_robots(text, UA)
    assert rules.group == "corpus-builder" and rules.crawl_delay == 2.5
    assert rules.allowed("http://x.test/page") == (True, None)
    assert not rules.allowed("http://x.test/private/a")[0]
    assert not rules.allowed("http://x.test/also")[0]  # groups of the same agent are merged
    assert not allowed(text, "/page", "SomeoneElse/1.0")


def test_no_matching_group_and_rules_outside_groups_allow():
    assert allowed("Disallow: /\nUser-agent: other\nDisallow: /\n", "/anything")
    assert allowed("", "/anything")
    assert allowed("User-agent: *\nDisallow:\n", "/anything")  # empty Disallow: allow all


def test_percent_encoding_is_normalised():
    text = "User-agent: *\nDisallow: /caf%C3%A9\nDisallow: /a%2fb\nDisallow: /%7Euser\n"
    assert not allowed(text, "/café/menu")
    assert not allowed(text, "/a%2Fb")
    assert allowed(text, "/a/b")  # an encoded slash is not a slash
    assert not allowed(text, "/~user/home")


def test_crawl_delay_sitemaps_comments_and_bom():
    text = ("\ufeffSitemap: /sitemap.xml # relative, resolved\n"
            "User-agent: *  # everyone\nCrawl-delay: soon\nCrawl-delay: 4\nDisallow: /x # no\n"
            "Sitemap: https://example.test/news.xml\n")
    rules = parse_robots(text, UA, "https://example.test/robots.txt")
    assert rules.crawl_delay == 4.0 and rules.group == "*"
    assert rules.sitemaps == ["https://example.test/sitemap.xml", "https://example.test/news.xml"]
    assert not rules.allowed("https://example.test/x")[0]


def test_product_token_and_origin():
    assert product_token(UA) == "corpus-builder"
    assert origin_of("HTTP://Example.TEST:80/a?b") == "http://example.test"
    assert origin_of("https://example.test:8443/") == "https://example.test:8443"
    assert origin_of("http://[::1]:8080/x") == "http://[::1]:8080"
    assert origin_of("ftp://example.test/") is None and origin_of("http://[bad/") is None


# ---- the cache over HTTP ------------------------------------------------------------------------

def robots_cache(**policy) -> tuple[RobotsCache, list]:
    seen = []
    fetcher = Fetcher(FetchPolicy(**{"deadline_s": 1.0, "retries": 0, "max_redirects": 5,
                                     "allowed_networks": ("127.0.0.1/32",), **policy}))
    cache = RobotsCache(fetcher.fetch, UA, on_fetch=lambda origin, result: seen.append(origin))
    return cache, seen


ROBOTS = ("User-agent: *\nDisallow: /private/\nCrawl-delay: 3\n"
          "Sitemap: http://example.test/sitemap.xml\n").encode()


def test_rules_are_fetched_once_per_origin_and_applied():
    with serve({"/robots.txt": Reply(200, ROBOTS)}) as one, \
            serve({"/robots.txt": Reply(200, b"User-agent: *\nDisallow: /\n")}) as two:
        cache, seen = robots_cache()
        assert cache.allowed(one.url("/page")) == (True, None)
        verdict = cache.allowed(one.url("/private/x"))
        assert verdict[0] is False and verdict[1][0] == "robots_disallowed"
        assert cache.crawl_delay(one.base) == 3.0
        assert cache.sitemaps(one.url("/anything")) == ["http://example.test/sitemap.xml"]
        assert cache.allowed(two.url("/page"))[0] is False
        assert cache.allowed(two.url("/robots.txt")) == (True, None)
        assert one.count("/robots.txt") == 1 and two.count("/robots.txt") == 1
        assert seen == [one.base, two.base] and len(cache) == 2
        assert one.log[0].header("User-Agent") == UA


def test_404_robots_allows_everything():
    with serve({}) as site:
        cache, _ = robots_cache()
        assert cache.allowed(site.url("/private/x")) == (True, None)
        assert cache.crawl_delay(site.base) is None and cache.sitemaps(site.base) == []


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_error_robots_disallows_everything(status):
    with serve({"/robots.txt": Reply(status, b"down")}) as site:
        cache, _ = robots_cache()
        ok, (reason, detail) = cache.allowed(site.url("/page"))
        assert not ok and reason == "robots_unavailable" and str(status) in detail
        assert not cache.allowed(site.url("/robots-not.txt"))[0]
        assert site.count("/robots.txt") == 1


def test_unreachable_robots_disallows_everything():
    def hang(ex):
        time.sleep(2)

    with serve({"/robots.txt": hang}) as site:
        cache, _ = robots_cache()
        ok, (reason, detail) = cache.allowed(site.url("/page"))
    assert not ok and reason == "robots_unavailable" and "timeout" in detail


def test_robots_goes_through_the_address_guard():
    with serve({"/robots.txt": Reply(200, b"")}, host="127.0.0.2") as refused:
        cache, _ = robots_cache()
        ok, (reason, detail) = cache.allowed(refused.url("/page"))
        assert refused.connections == 0
    assert not ok and reason == "robots_unavailable" and "blocked_address" in detail


def test_robots_redirect_is_followed_across_origins():
    with serve({"/real-robots.txt": Reply(200, b"User-agent: *\nDisallow: /nope\n")}) as target, \
            serve({"/robots.txt": Reply(301, headers=(("Location",
                                                       target.url("/real-robots.txt")),))}) as site:
        cache, _ = robots_cache()
        assert cache.allowed(site.url("/nope/x"))[0] is False  # the rules apply to `site`
        assert cache.allowed(site.url("/yes")) == (True, None)
        assert target.count("/real-robots.txt") == 1 and site.count("/robots.txt") == 1


def test_robots_redirect_loop_counts_as_unavailable():
    with serve({"/robots.txt": Reply(302, headers=(("Location", "/robots.txt"),))}) as site:
        cache, _ = robots_cache()
        assert cache.allowed(site.url("/page")) == (True, None)
        assert site.count("/robots.txt") == 6  # the request and five redirects followed


def test_evicted_origins_are_fetched_again():
    with serve({"/robots.txt": Reply(200, ROBOTS)}) as one, \
            serve({"/robots.txt": Reply(200, ROBOTS)}) as two:
        fetcher = Fetcher(FetchPolicy(allowed_networks=("127.0.0.1/32",)))
        cache = RobotsCache(fetcher.fetch, UA, max_origins=1)
        for url in (one.url("/a"), one.url("/b"), two.url("/a"), one.url("/c")):
            cache.allowed(url)
        assert one.count("/robots.txt") == 2 and two.count("/robots.txt") == 1
        assert len(cache) == 1
    assert cache.allowed("ftp://elsewhere/")[1][0] == "bad_url"
