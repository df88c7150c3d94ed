"""Our phone-number rules against the `phonenumbers` library (Google's libphonenumber port),
which is not a dependency: install it beside the project to run this.

    .venv/bin/pip install phonenumbers==9.0.43
    .venv/bin/python bench/pii_vs_phonenumbers.py [--regions US,DE,FR]

Per region (phonenumbers needs one per call; a web corpus gives none): of the phone numbers in
tests/test_pii.py's REPLACED lines, how many it finds; of its UNTOUCHED lines (versions, dates,
prices, ISBNs, ids that must stay), how many spans it takes for phones; and its CPU for the
phone matcher alone against our whole redactor (e-mail, IP and phone) on the twelve-sentence
documents of ../shared/data/langid (as bench/pii_speed.py builds them). Prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pii_speed import documents  # noqa: E402  (bench/ is on sys.path as a script)

from pipelines.filters.pii import PiiRedactor  # noqa: E402
from tests.test_pii import REPLACED, UNTOUCHED  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regions", default="US,DE,FR", help="phonenumbers' default regions")
    args = ap.parse_args()
    try:
        import phonenumbers
    except ImportError:
        print("phonenumbers is not installed: .venv/bin/pip install phonenumbers==9.0.43",
              file=sys.stderr)
        return 2
    docs = documents(ROOT.parent / "shared" / "data" / "langid")
    redactor = PiiRedactor()
    started = time.process_time()
    for doc in docs:
        redactor.redact(doc)
    ours = time.process_time() - started
    phone_lines = [(text, out.count("<PHONE>")) for text, out in REPLACED if "<PHONE>" in out]
    wanted = sum(n for _, n in phone_lines)
    print(f"{len(docs):,} documents of ../shared/data/langid; {wanted} phone numbers in "
          f"{len(phone_lines)} lines, {len(UNTOUCHED)} lines that must stay (tests/test_pii.py)")
    print("\n| matcher | numbers found | false spans in lines that must stay | CPU, x our "
          "whole redactor |")
    print("|---|---|---|---|")
    ours_found = sum(min(n, redactor.redact(text)[1].get("phone", 0)) for text, n in phone_lines)
    ours_false = sum(redactor.redact(text)[1].get("phone", 0) for text in UNTOUCHED)
    print(f"| ours (pipelines/filters/pii.py) | {ours_found}/{wanted} | {ours_false} | 1.0 |")
    for region in args.regions.split(","):
        found = sum(min(n, sum(1 for _ in phonenumbers.PhoneNumberMatcher(text, region)))
                    for text, n in phone_lines)
        false = [m.raw_string for text in UNTOUCHED
                 for m in phonenumbers.PhoneNumberMatcher(text, region)]
        started = time.process_time()
        for doc in docs:
            for _ in phonenumbers.PhoneNumberMatcher(doc, region):
                pass
        cpu = time.process_time() - started
        print(f"| phonenumbers, region {region} | {found}/{wanted} | {len(false)} | "
              f"{cpu / ours:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
