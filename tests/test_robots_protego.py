"""Where protego (the robots.txt parser under pipelines/crawl/robots.py) and RFC 9309 part ways.

First the cases the module shims, each showing bare protego's answer next to ours; then the cases
where we take protego's reading, so that a change in it (an upgrade) is noticed.
"""

from protego import Protego

from pipelines.crawl.robots import parse_robots, product_token

UA = "corpus-builder/0.1 (+https://example.invalid/corpus)"
URL = "http://example.test"


def ours(text: str, path: str) -> bool:
    return parse_robots(text, UA).allowed(URL + path)[0]


def bare(text: str, path: str, user_agent: str = product_token(UA)) -> bool:
    return Protego.parse(text).can_fetch(URL + path, user_agent)


# ---- shimmed: our answer is the RFC's, bare protego's is not -------------------------------------

def test_a_versioned_agent_line_names_its_product_token():
    text = "User-agent: Corpus-Builder/2.0\nDisallow: /\n"
    assert bare(text, "/x") and bare(text, "/x", UA)  # protego compares the whole value
    assert not ours(text, "/x")


def test_a_group_for_a_prefix_of_our_token_is_not_ours():
    text = "User-agent: corpus\nDisallow: /\n"
    assert not bare(text, "/x")  # protego: "corpus" occurs in "corpus-builder"
    assert ours(text, "/x")


def test_words_of_the_user_agent_header_are_not_group_names():
    text = "User-agent: example\nDisallow: /\n"
    assert not bare(text, "/x", UA)  # protego finds "example" in "+https://example.invalid"
    assert ours(text, "/x")


def test_no_wildcards_in_user_agent_lines():
    text = "User-agent: corpus-*\nDisallow: /\n"
    assert not bare(text, "/x")  # protego also reads it as "corpus-", a prefix of ours
    assert ours(text, "/x")


def test_the_exact_group_beats_the_star_group_even_for_a_one_letter_token():
    text = "User-agent: *\nDisallow: /\n\nUser-agent: c\nAllow: /\n"
    assert not Protego.parse(text).can_fetch(URL + "/x", "c")  # a tie of scores: first group
    assert parse_robots(text, "c/1.0").allowed(URL + "/x") == (True, None)


def test_a_byte_order_mark_does_not_hide_the_first_line():
    text = "\ufeffUser-agent: *\nDisallow: /\n"
    assert bare(text, "/x")  # protego reads "\ufeffuser-agent" as an unknown key
    assert not ours(text, "/x")


# ---- taken from protego: its reading differs from RFC 9309 or from our old parser ----------------

def test_escaped_reserved_characters_equal_the_characters():
    # RFC 9309 2.2.2: an escaped reserved character is not decoded before comparing
    for pattern, path in (("/a%3Fb", "/a?b"), ("/a?b", "/a%3Fb"), ("/s?a%3D1", "/s?a=1"),
                          ("/s?a=1%26b", "/s?a=1&b=2"), ("/a+b", "/a%2Bb"), ("/a;b", "/a%3Bb")):
        assert not ours(f"User-agent: *\nDisallow: {pattern}\n", path), (pattern, path)
    assert ours("User-agent: *\nDisallow: /a%2Fb\n", "/a/b")  # but "/" stays apart


def test_a_reserved_character_counts_three_octets_toward_the_longest_match():
    text = "User-agent: *\nAllow: /a?\nDisallow: /a*cd\n"  # "?" is "%3F": a tie, Allow wins
    assert ours(text, "/a?bcd")


def test_an_end_anchor_also_matches_a_dollar_sign():
    assert not ours("User-agent: *\nDisallow: /a$\n", "/a$b")
    assert ours("User-agent: *\nDisallow: /a$\n", "/ab")


def test_allowing_index_html_allows_its_folder():
    text = "User-agent: *\nDisallow: /d/\nAllow: /d/index.html\n"
    assert ours(text, "/d/") and not ours(text, "/d/other")


def test_an_unknown_record_ends_the_list_of_user_agents():
    text = "User-agent: *\nFoo: bar\nUser-agent: other\nDisallow: /\n"
    assert ours(text, "/x")  # our old parser: one group for * and other


def test_robots_txt_with_a_query_is_allowed():
    assert ours("User-agent: *\nDisallow: /\n", "/robots.txt?x")


def test_what_the_old_parser_read_otherwise():
    assert ours("User-agent: *\nDisallow: private\n", "/private")  # not made "/private"
    assert not ours("User-agent: *\nDisallow: /a?\n", "/a?")  # an empty query keeps its "?"
    assert not ours("User-agent: *\nDissallow: /\n", "/x")  # misspellings accepted
    assert not ours("User-agent *\nDisallow /\n", "/x")  # and no colon
    assert ours("User_agent: *\nDisallow: /\n", "/x")  # but not "_" for "-"
    delays = "User-agent: *\nCrawl-delay: 1\nCrawl-delay: 2\n"
    assert parse_robots(delays, UA).crawl_delay == 2.0  # the last one (ours took the first)
