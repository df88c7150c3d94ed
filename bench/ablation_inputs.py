"""Inputs for the README's worked ablation, made from ../shared/data (nothing downloaded, nothing
copied into the repository): the 80 real pages of `extraction/html` as one WARC file of HTTP
responses under their own URLs (`evaldata.json`), and a file of positives for a quality model:
real sentences of the Leipzig web corpora (`langid/en.txt`, `langid/de.txt`, the two languages
most of the pages are in), 8 consecutive sentences a text, texts separated by a blank line (the
plain-text form `corpus quality-model train --positive` reads).

    python bench/ablation_inputs.py OUT_DIR    # writes OUT_DIR/pages.warc.gz, positives.txt
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SENTENCES_PER_TEXT = 8


def write_pages(out: Path) -> int:
    pages = json.loads((DATA / "extraction" / "evaldata.json").read_text(encoding="utf-8"))
    with open(out, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, about in sorted(pages.items()):
            body = (DATA / "extraction" / "html" / about["file"]).read_bytes()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html"),
                                                  ("Content-Length", str(len(body)))],
                                       protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=headers))
    return len(pages)


def write_positives(out: Path) -> int:
    texts = []
    for lang in ("en", "de"):
        lines = [x.strip() for x in (DATA / "langid" / f"{lang}.txt").read_text(
            encoding="utf-8").splitlines() if x.strip()]
        texts += [" ".join(lines[i:i + SENTENCES_PER_TEXT])
                  for i in range(0, len(lines), SENTENCES_PER_TEXT)]
    out.write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    return len(texts)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    pages = write_pages(folder / "pages.warc.gz")
    positives = write_positives(folder / "positives.txt")
    print(f"{folder / 'pages.warc.gz'}: {pages} pages; {folder / 'positives.txt'}: "
          f"{positives} texts")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
