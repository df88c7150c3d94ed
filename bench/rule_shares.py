"""What each quality rule drops of real pages: the 80 pages of ../shared/data/extraction
(trafilatura's evaluation set: news, blogs, shops, in several languages), each a page a reader
would call good content.

    .venv/bin/python bench/rule_shares.py [--data ../shared/data/extraction] [--markdown]

Each page goes through what the pipeline runs: the extract stage's per-page function
(`pipelines.extract.html.extract_page` with `ExtractConfig`'s defaults), language ID
(`LanguageFilter`, keeping every language), then the quality filters. Two numbers per rule
(named by the reason it rejects with):

- alone: pages the rule drops when it is the only rule on (`off_rules` = every other reason);
- first: pages the default chain drops with this reason (the first rule that fires).

Pages without main text are counted apart. Rules that drop nothing are listed in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.extract.html import extract_page  # noqa: E402
from pipelines.filters.base import apply_filters  # noqa: E402
from pipelines.filters.chain import quality_filters, rule_reasons  # noqa: E402
from pipelines.filters.langid import LanguageFilter  # noqa: E402
from schemas.config import ExtractConfig, FilterConfig, QualityConfig  # noqa: E402


def pages(data: Path) -> list[dict]:
    """The benchmark's pages as documents: url, extracted text, language."""
    meta = json.loads((data / "evaldata.json").read_text(encoding="utf-8"))
    cfg = ExtractConfig()
    options = {"favor_precision": cfg.favor_precision, "include_tables": cfg.include_tables,
               "fast": cfg.fast}
    docs = []
    for url, item in sorted(meta.items()):
        body = (data / "html" / item["file"]).read_bytes()
        page = extract_page(body, url, "text/html", options)
        docs.append({"id": item["file"], "url": url, "text": (page or {}).get("text") or ""})
    lid = LanguageFilter(FilterConfig())
    lid.setup()
    return lid.label_batch(docs)


def shares(docs: list[dict]) -> tuple[list[tuple[str, int, int]], int]:
    """[(reason, pages dropped alone, pages dropped first in the chain)], pages without text."""
    with_text = [d for d in docs if d["text"].strip()]
    default = QualityConfig()
    reasons = [r for r in rule_reasons(default) if r != "blocked_url"]  # no blocklist is given
    first = Counter(rej.reason for _, rej in apply_filters(with_text, quality_filters(default))
                    if rej is not None)
    rows = []
    for reason in reasons:
        alone = QualityConfig(off_rules=tuple(r for r in reasons if r != reason))
        dropped = sum(rej is not None for _, rej in apply_filters(with_text,
                                                                  quality_filters(alone)))
        rows.append((reason, dropped, first[reason]))
    return rows, len(docs) - len(with_text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "extraction")
    p.add_argument("--markdown", action="store_true", help="print the README's table rows")
    args = p.parse_args()
    docs = pages(args.data)
    rows, empty = shares(docs)
    n = len(docs) - empty
    langs = Counter(d.get("lang") for d in docs if d["text"].strip())
    print(f"{len(docs)} pages, {empty} without main text; {n} scored; languages: "
          + ", ".join(f"{lang} {k}" for lang, k in langs.most_common()))
    dropping = [r for r in rows if r[1] or r[2]]
    none = [r[0] for r in rows if not (r[1] or r[2])]
    kept = n - sum(r[2] for r in rows)
    if args.markdown:
        print("| rule (reason) | drops alone | drops first in the chain |\n|---|---|---|")
        for reason, alone, first in dropping:
            print(f"| `{reason}` | {alone} ({alone / n:.1%}) | {first} ({first / n:.1%}) |")
    else:
        print(f"{'rule (reason)':<28} {'alone':>12} {'first':>12}")
        for reason, alone, first in dropping:
            print(f"{reason:<28} {alone:>4} {alone / n:>6.1%} {first:>5} {first / n:>6.1%}")
    print(f"the whole chain keeps {kept} of {n} ({kept / n:.1%}); no page dropped by: "
          + ", ".join(none))
    return 0


if __name__ == "__main__":
    sys.exit(main())
