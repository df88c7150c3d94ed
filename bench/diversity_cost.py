"""What the corpus's diversity report costs per document, against counting exactly.

    python bench/diversity_cost.py [--data ../shared/data] [--repeat 3]

Documents: tinyshakespeare as documents of consecutive speeches (600+ characters each). Timed on
one core: `GroupSketch.add` for every document (word 5-gram hashes, register updates, host hash),
against an exact count (a Python set of each document's 5-gram hashes, hashed one document at a
time, and a set of the tuples of tokens themselves). Prints the best of `--repeat` runs, the
estimates and the memory each holds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.dedup.minhash import tokens, word_ngram_hashes  # noqa: E402
from pipelines.shard.diversity import RELATIVE_ERROR, GroupSketch  # noqa: E402


def documents(data: Path) -> list[dict]:
    docs, current = [], []
    for speech in (data / "text" / "tinyshakespeare.txt").read_text().split("\n\n"):
        current.append(speech.strip())
        if sum(map(len, current)) >= 600:
            docs.append({"text": "\n\n".join(current), "host": f"h{len(docs) % 50}.example"})
            current = []
    return docs


def best(repeat: int, fn):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    docs = documents(args.data)
    megabytes = sum(len(d["text"].encode()) for d in docs) / 1e6
    word_ngram_hashes(["warm up the tables once"], 5)

    def sketch():
        acc = GroupSketch()
        for doc in docs:
            acc.add(doc)
        return acc.distinct_ngrams(), acc.ngrams.reg.nbytes + acc.domains.reg.nbytes

    def exact_hashes():
        found = set()
        for doc in docs:
            found.update(word_ngram_hashes([doc["text"]], 5).tolist())
        return len(found), sys.getsizeof(found) + 32 * len(found)

    def exact_tuples():
        found = set()
        for doc in docs:
            words = tokens(doc["text"])
            found.update(zip(*(words[i:] for i in range(5))))
        return len(found), None

    rows = [("HyperLogLog++ (this stage)", *best(args.repeat, sketch)),
            ("exact: set of 5-gram hashes", *best(args.repeat, exact_hashes)),
            ("exact: set of token tuples", *best(args.repeat, exact_tuples))]
    exact = rows[2][2][0]
    print(f"{len(docs)} documents, {megabytes:.2f} MB of text, stated error "
          f"{RELATIVE_ERROR:.2%}")
    print(f"{'method':30} {'s':>6} {'MB/s':>6} {'distinct':>9} {'error':>7} {'held':>9}")
    for name, seconds, (count, held) in rows:
        error = (count - exact) / exact
        shown = f"{held / 1e6:.2f} MB" if held else "-"
        print(f"{name:30} {seconds:6.2f} {megabytes / seconds:6.1f} {round(count):9d} "
              f"{error:+7.2%} {shown:>9}")


if __name__ == "__main__":
    main()
