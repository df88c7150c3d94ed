"""PII replacement: e-mail addresses, IP addresses and phone numbers become fixed placeholders.

It runs on every document of a web corpus, so it favours precision over recall: a span is
replaced only when it has the shape of the kind *and* its context does not say it is something
else (a version, a section number, a date, a price, a piece of a longer number). Everything
outside the replaced spans stays byte-identical. What counts, and why:

- **email**: `local@domain.tld` with subdomains, plus-addressing and Unicode (IDN) letters in the
  local part and domain; the TLD is letters (or `xn--` punycode). Not e-mails: `@mention`,
  `user@` without a domain, `image@2x.png` (asset names: a `<n>x` first label or an image
  extension as TLD), `pkg@1.2.3`. Bracketed obfuscations (`john [at] example [dot] com`,
  `jane(at)example.org`) are e-mails too; bare "at"/"dot" words are not (too many false hits).
  Letters of scripts written without spaces (CJK, kana, Hangul, Thai, Lao, Khmer, Myanmar) never
  join a local part or domain, so `邮箱john@example.com` loses only the address (and an address
  written wholly in those scripts is not found). Service addresses (`git@github.com`,
  `info@...`) are replaced too: their shape cannot be told from a person's.
- **ip**: IPv4 with valid octets (0-255, no leading zeros) and IPv6 (full, `::`-compressed,
  embedded IPv4; validated with `ipaddress`). A dotted quad is *not* an IP when it
  - is part of a longer token (`1.2.3.4.5`, `v1.2.3.4`, `lib-1.2.3.4`, `1.2.3.4.tar`) or sits in
    a run of space-separated numbers (`0 1.11.8.8 0`: SVG paths, tables);
  - follows a version or numbering word (`version`, `v`, `build`, `firmware`, `ver=`, `section`,
    `chapter`, `§`, `версия` ... within a few characters: `_NOT_IP_CONTEXT`): this is how a
    4-part version such as `version 1.12.3.4` is told from an address;
  - starts with 0 or ends with .0 (not a host; and how versions end), or has only single-digit
    parts (`1.2.3.4` reads as a section number; such addresses are a few public resolvers such
    as 1.1.1.1 and 9.9.9.9, never a person).
  An IPv6 address must hold a digit and open with a 3-4 hex digit group not starting with 0
  (`2001:`, `fe80:`, `fd12:`) or embed an IPv4, so `::1`, `a::b`, `std::max`, `0::598` and
  `1:2:3:4:5:6:7:8` stay. MAC addresses are kept (hardware ids, rare in prose, shaped like hex
  dumps and timestamps, and not asked for).
- **phone**: international numbers starting with `+` and a country code (9-15 digits:
  `+1 (555) 123-4567`, `+44 (0)20 7946 0958`, `+33 1 23 45 67 89`, `+4930123456`); North
  American `(555) 555-1234`, `555-123-4567`, `555.123.4567`, `1-800-555-1234`, and spaced or
  slashed `812 936 2100`, `812/936-2100` when area code and exchange are valid (first digit 2-9:
  `123 456 7890` stays, as ids and tables are grouped so too); national numbers
  with a trunk 0 and an area code set apart (9-12 digits, subscriber part 5+: `030 1234567`,
  `(030) 1234567`, `089/12345678`, `020 7946 0958`, `08-783 04 40`, French `01 23 45 67 89`);
  a non-breaking hyphen or an en dash counts as a hyphen (`812‑936‑2100`, `812–936–2100`).
  Not phones: plain digit runs (`0301234567`, `123456789`), 7-digit local numbers (`555-1234`),
  space-grouped numbers without `+` or a trunk 0 (`973 43 80 06`: too like `12 000 000`),
  anything holding a date (`07-05-2020-15-15`), `+123.456.789`, times, years and ranges, ISBNs,
  prices, coordinates, and a group that continues a longer number (`2 034 567 890`).

Placeholders default to `<EMAIL>`, `<IP>`, `<PHONE>`; they contain nothing any pattern matches,
so redacting twice changes nothing more. Patterns are compiled once at import; a `PiiRedactor`
holds only its settings, so it pickles cheaply for Beam.
"""

from __future__ import annotations

import ipaddress
import re

from schemas.config import PiiConfig

KINDS = ("email", "ip", "phone")

# --- e-mail ---------------------------------------------------------------------------------

# Letters of scripts written without spaces between words: an address glued to them must not
# swallow the neighbouring text.
_NO_SPACE_SCRIPTS = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # Hangul
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff"  # CJK, kana, bopomofo
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"  # Han, half-width kana
    "\U00020000-\U0003134f"  # Han extensions
)
_WORD = rf"[^\W{_NO_SPACE_SCRIPTS}]"  # a word character of a spaced script
_LABEL_CHAR = rf"[^\W_{_NO_SPACE_SCRIPTS}]"  # letters and digits
_TLD_CHAR = rf"[^\W\d_{_NO_SPACE_SCRIPTS}]"  # letters
# Possessive repeats and one start per token (never inside `a.b-c'd`) keep the scan linear.
_LOCAL = (rf"(?<!{_WORD})(?<!{_WORD}['.%+=-]){_WORD}"
          rf"(?:{_WORD}++|['%+=-]++)*+(?:\.(?:{_WORD}++|['%+=-]++)++)*+")
_LABEL = rf"{_LABEL_CHAR}++(?:-++{_LABEL_CHAR}++)*+"
_TLD = rf"(?:{_TLD_CHAR}{{2,63}}|xn--[a-z0-9-]{{1,59}})"
_OPEN, _CLOSE = r"[\[({<]", r"[\])}>]"
_OBF_AT = rf"[ \t]?{_OPEN}[ \t]?(?:at|AT|At)[ \t]?{_CLOSE}[ \t]?"
_OBF_DOT = rf"[ \t]?{_OPEN}[ \t]?(?:dot|DOT|Dot)[ \t]?{_CLOSE}[ \t]?"
_EMAIL = re.compile(
    rf"(?P<local>{_LOCAL})(?P<at>@|{_OBF_AT})"
    rf"(?P<domain>(?:{_LABEL}(?:\.|{_OBF_DOT}))+(?P<tld>{_TLD}))"
    rf"(?!{_LABEL_CHAR}|-)")
# Asset names such as `icon@2x.png`, `logo@1.5x.webp`: a pixel-ratio first label or an image
# extension where the TLD would be.
_RETINA_LABEL = re.compile(r"[0-9]+(?:[.,][0-9]+)?x", re.ASCII | re.IGNORECASE)
_LABEL_END = re.compile(r"\.|[ \t]?[\[({<]")
_IMAGE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp avif bmp ico tif tiff heic".split())
_AT_SIGN = re.compile(rf"[@\[({{<](?:(?<=@)|[ \t]?(?:at|AT|At)[ \t]?{_CLOSE})")  # @ or [at]
_MAX_LOCAL, _MAX_DOMAIN = 64, 255  # RFC 5321 limits (plus room for obfuscation spaces)


def _email_window(text: str) -> tuple[int, int] | None:
    """The stretch of text that can hold e-mails: from a local part's length before the first
    "@" (or "[at]") to a domain's length after the last one; None when there is neither.
    Most documents have none, and the e-mail pattern, the costliest, never runs on them."""
    first = text.find("@")
    hint = _AT_SIGN.search(text, 0, first if first >= 0 else len(text))
    if hint:
        first = hint.start()
    if first < 0:
        return None
    last = max(m.start() for m in _AT_SIGN.finditer(text, first))
    return max(0, first - _MAX_LOCAL - 1), min(len(text), last + _MAX_DOMAIN + 10)


# --- IP addresses ---------------------------------------------------------------------------

# The number patterns open with a character class so that the regex engine skips every other
# position without entering the pattern (a leading lookbehind would switch that off); the
# boundary checks are lookbehinds placed after that first character, hence their extra `.`.

# A dotted quad that is not part of a longer dotted/dashed token or a run of numbers (SVG paths,
# tables); octet values (0-255, no leading zeros) are checked in `_is_ipv4`.
_IPV4 = re.compile(
    r"[0-9](?<![\w.+-].)(?<![0-9] .)[0-9]{0,2}+(?:\.[0-9]{1,3}+){3}"
    r"(?!\w)(?![.-]?[0-9]|\.\w| [0-9])",
    re.ASCII)
# Words after which a dotted quad is a version or a section number, not an address.
_NOT_IP_CONTEXT = re.compile(
    r"(?:\b(?:versions?|vers?|v|releases?|rel|builds?|firmware|fw|bios|kernel|patch|updates?"
    r"|rev|revision|r|versión|versão|versione|versie|wersja|verze|verzió|versio|sürüm"
    r"|версия|версии|версию|версія|версії|верзија|sections?|sect?|chapters?|chap|ch"
    r"|articles?|art|clauses?|paragraphs?|para|parts?|appendix|annex|figures?|fig|tables?|tab"
    r"|steps?|items?|rules?|no|nr|number|point|pt)\.?|§§?)\s*[:#=]?\s*$",
    re.IGNORECASE)
_HEX = r"[0-9A-Fa-f]"
# IPv6 candidates: a run of hex groups and colons (optionally ending in dotted IPv4), validated
# by `ipaddress` in `_is_ipv6`. Possessive repeats keep the scan linear.
_IPV6 = re.compile(
    rf"[0-9A-Fa-f:](?<![\w:.].)"
    rf"(?:(?<=[0-9A-Fa-f]){_HEX}{{0,3}}(?::{_HEX}{{0,4}}){{2,7}}+"  # 2001:db8::1, full form
    rf"|(?<=:):(?:{_HEX}{{1,4}}(?::{_HEX}{{0,4}}){{0,6}}+)?)"  # ::ffff:192.0.2.1
    rf"(?:\.[0-9]{{1,3}}){{0,3}}+(?![\w:])(?!\.[0-9])",
    re.ASCII)
_PREFIX_GROUP = re.compile(rf"[1-9A-Fa-f]{_HEX}{{2,3}}:", re.ASCII)

# --- phone numbers --------------------------------------------------------------------------

_SP = "[ \u00a0]"
_GROUP = r"(?:\([0-9]++\)|[0-9]++)"
_PHONE = re.compile(
    # the first character, then: not a piece of a longer number, word or code
    rf"[+(0-9](?<![\w+].)(?<![0-9][ \u00a0\u202f.,/:-].)(?<![A-Za-z][-/].)"
    rf"(?:"
    # international: +country code, then groups: +1 (555) 123-4567, +44 (0)20 7946 0958
    rf"(?<=\+)(?P<intl>[1-9][0-9]*+(?:{_SP}?\(0\))?"
    rf"(?:(?:{_SP}?[-.]{_SP}?|{_SP})?{_GROUP}){{0,7}}+)"
    # North American: (555) 555-1234, 555-123-4567, 555.123.4567, 1-800-555-1234
    rf"|(?P<nanp>(?<=1)[ .-](?:\([0-9]{{3}}\){_SP}?|[0-9]{{3}}[.-])[0-9]{{3}}[ .-][0-9]{{4}}"
    rf"|(?<=\()[0-9]{{3}}\){_SP}?[0-9]{{3}}[ .-][0-9]{{4}}"
    rf"|(?<=[0-9])[0-9]{{2}}-[0-9]{{3}}-[0-9]{{4}}|(?<=[0-9])[0-9]{{2}}\.[0-9]{{3}}\.[0-9]{{4}}"
    # ... spaced or slashed: 812 936 2100, 812/936-2100; valid area code and exchange only
    rf"|(?<=[2-9])[0-9]{{2}}(?:{_SP}|{_SP}?/{_SP}?)[2-9][0-9]{{2}}[{_SP[1:-1]}-][0-9]{{4}})"
    # French style, one separator throughout: 01 23 45 67 89
    rf"|(?<=0)(?P<pairs>[1-9](?P<sep>[ \u00a0.-])[0-9]{{2}}(?:(?P=sep)[0-9]{{2}}){{3}})"
    # trunk 0 + area code, apart from the subscriber number: (030) 1234567, 030 1234567
    rf"|(?P<trunk>(?:(?<=\()0[1-9][0-9]{{0,3}}\){_SP}?"
    rf"|(?<=0)[1-9][0-9]{{0,3}}+(?:{_SP}?/{_SP}?|[ \u00a0-]))"
    rf"(?P<subscriber>[0-9]{{2,}}+(?:[ \u00a0-][0-9]{{2,}}+){{0,3}}+))"
    rf")"
    rf"(?!\w)(?![ \u00a0.,/:-]?[0-9])(?![.:/-][A-Za-z])",
    re.ASCII)
_DIGIT = re.compile(r"[0-9]", re.ASCII)
# A date inside a candidate (07-05-2020-15-15, 2020.05.07) makes it a timestamp, not a number.
_DATE = re.compile(r"(?<![0-9])(?:[0-3]?[0-9]([-./ ])[01]?[0-9]\1(?:19|20)[0-9]{2}"
                   r"|(?:19|20)[0-9]{2}([-./ ])[01]?[0-9]\2[0-3]?[0-9])(?![0-9])", re.ASCII)
_DOTTED_THOUSANDS = re.compile(r"\+[0-9]{1,3}(?:\.[0-9]{3})+", re.ASCII)  # +123.456.789
_PHONE_DIGITS = {"intl": (9, 15), "nanp": (10, 11), "pairs": (10, 10), "trunk": (9, 12)}
# Typeset numbers: word processors and CMSs turn "-" into a non-breaking hyphen (U+2011) or an
# en dash (U+2013). Phones are looked for in the text with these read as "-" (one character for
# one, so every match is the same span of the original text). The em dash stays: it is prose.
_PHONE_DASHES = ("\u2010", "\u2011", "\u2012", "\u2013", "\u2212")
_PHONE_DASH = re.compile("[\u2010-\u2013\u2212]")


def _is_ipv6(match: re.Match) -> bool:
    candidate = match.group()
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    if _DIGIT.search(candidate) is None:
        return False  # dead::beef, a::b
    # Real addresses open with a 3-4 hex digit prefix without a leading 0 (2001:, fe80:, fd12:,
    # 2a02:) or embed an IPv4; this keeps ::1, 1::2, 0::598, a1::b2 and 1:2:3:4:5:6:7:8.
    return "." in candidate or _PREFIX_GROUP.match(candidate) is not None


def _is_ipv4(match: re.Match) -> bool:
    octets = match.group().split(".")
    if any(int(o) > 255 or (o[0] == "0" and len(o) > 1) for o in octets):
        return False  # not an address (a version like 10.0.19041.1, or 01.02.03.04)
    if octets[0] == "0" or octets[3] == "0" or all(len(o) == 1 for o in octets):
        return False
    start = match.start()
    before = match.string[max(0, start - 24):start]
    return _NOT_IP_CONTEXT.search(before) is None


def _is_email(match: re.Match) -> bool:
    domain, tld = match.group("domain"), match.group("tld")
    first_label = _LABEL_END.split(domain, maxsplit=1)[0]
    if _RETINA_LABEL.fullmatch(first_label) or tld.lower() in _IMAGE_EXTENSIONS:
        return False
    if match.group("at") != "@" and not (tld.islower() or tld.isupper()):
        return False  # "meeting (at) noon.Then" is prose, not an obfuscated address
    return True


def _is_phone(match: re.Match) -> bool:
    kind = next(k for k in _PHONE_DIGITS if match.group(k) is not None)
    text = match.group()
    low, high = _PHONE_DIGITS[kind]
    if not low <= len(_DIGIT.findall(text)) <= high:
        return False
    if kind == "trunk" and len(_DIGIT.findall(match.group("subscriber"))) < 5:
        return False  # "04002/1257" is a file reference; subscriber numbers have 5+ digits
    if _DATE.search(text):
        return False
    return not (kind == "intl" and _DOTTED_THOUSANDS.fullmatch(text))


class PiiRedactor:
    """Replaces PII spans by placeholders: `redact(text) -> (new_text, {kind: count})`.

    Holds only its settings (the patterns are module-level), so it pickles for Beam."""

    def __init__(self, config: PiiConfig | None = None):
        config = config or PiiConfig()
        unknown = set(config.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds {sorted(unknown)}; known: {list(KINDS)}")
        self.config = config
        self.kinds = tuple(k for k in KINDS if config.enabled and k in config.kinds)
        self.placeholders = {"email": config.email_placeholder, "ip": config.ip_placeholder,
                             "phone": config.phone_placeholder}
        for kind, placeholder in self.placeholders.items():
            if self.redact(f"a {placeholder} b")[1]:
                raise ValueError(f"the {kind} placeholder {placeholder!r} looks like PII itself")

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with every enabled kind replaced, and the count per kind (only counts > 0).
        Order matters: e-mails first (their local parts may hold digits), IPv6 before IPv4
        (embedded IPv4), phones last."""
        counts: dict[str, int] = {}
        if not self.kinds:
            return text, counts
        if "email" in self.kinds:
            window = _email_window(text)
            if window:
                text = self._sub(_EMAIL, _is_email, "email", text, counts, *window)
        if "ip" in self.kinds:
            if "::" in text or text.count(":") >= 6:
                text = self._sub(_IPV6, _is_ipv6, "ip", text, counts)
            if "." in text:
                text = self._sub(_IPV4, _is_ipv4, "ip", text, counts)
        if "phone" in self.kinds:
            typeset = any(dash in text for dash in _PHONE_DASHES)  # `in` is the fast test
            scan = _PHONE_DASH.sub("-", text) if typeset else None
            text = self._sub(_PHONE, _is_phone, "phone", text, counts, scan=scan)
        return text, counts

    def _sub(self, pattern: re.Pattern, accept, kind: str, text: str, counts: dict,
             pos: int = 0, endpos: int | None = None, scan: str | None = None) -> str:
        """`pattern.sub` over text[pos:endpos], replacing only the matches that `accept`.
        Lookbehinds still see the text before `pos`; lookaheads stop at `endpos`, so a match
        that reaches `endpos` before the end of the text is not trusted. `scan`, when given, is
        the text to match in: `text` with some characters read as others, one for one."""
        endpos = len(text) if endpos is None else endpos
        pieces, last = [], 0
        for match in pattern.finditer(text if scan is None else scan, pos, endpos):
            if match.end() == endpos < len(text) or not accept(match):
                continue
            pieces += (text[last:match.start()], self.placeholders[kind])
            last = match.end()
        if not pieces:
            return text
        counts[kind] = counts.get(kind, 0) + len(pieces) // 2
        pieces.append(text[last:])
        return "".join(pieces)
