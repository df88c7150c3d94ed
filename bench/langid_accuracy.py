"""Document-level language ID accuracy, speed and memory: fastText alone vs the default config.

    .venv/bin/python bench/langid_accuracy.py [--docs-per-language 41] [--sentences 12]
        [--batch-size 256] [--sweep] [--high-accuracy]

Documents are 12 consecutive sentences (lines 0-11, 12-23, ...) of ../shared/data/langid/<code>.txt
(75 languages, 500 real web sentences each, Japanese 412), joined by newlines as a page's
paragraphs would be. Each configuration runs in a fresh process, so its peak RSS is its own;
documents/s counts `predict` only (models already loaded), setup is timed apart. Accuracy is over
the languages the configuration can output (`known_languages()`); a language it cannot output is
shown but not counted. `--sweep` also prints the default config's accuracy and the share of
documents lingua decides for several `lingua_below` thresholds; `--high-accuracy` adds lingua's
high accuracy mode (it differs from the default only on texts under 120 characters: try it with
`--sentences 1`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.config import LangIdConfig  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "langid"


def load_documents(data: Path, per_language: int, sentences: int = 12) -> list[tuple[str, str]]:
    """(language, text) pairs; split on "\\n" only: nb.txt holds U+0085, which splitlines cuts."""
    docs = []
    for path in sorted(data.glob("*.txt")):
        lines = [ln for ln in path.read_text(encoding="utf-8").split("\n") if ln.strip()]
        for start in range(0, len(lines) - sentences + 1, sentences)[:per_language]:
            docs.append((path.stem, "\n".join(lines[start:start + sentences])))
    return docs


def run_config(config: LangIdConfig, texts: list[str], batch_size: int) -> dict:
    """In a child process: setup, predict in batches; times, peak RSS and the labels."""
    from pipelines.filters.langid import LanguageIdentifier

    lid = LanguageIdentifier(config)
    started = time.perf_counter()
    lid.setup()
    setup_s = time.perf_counter() - started
    started = time.perf_counter()
    labels = []
    for i in range(0, len(texts), batch_size):
        labels += [code for code, _ in lid.predict(texts[i:i + batch_size])]
    predict_s = time.perf_counter() - started
    return {"labels": labels, "known": lid.known_languages(), "setup_s": setup_s,
            "docs_per_s": len(texts) / predict_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_fresh_process(config: LangIdConfig, texts: list[str], batch_size: int) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_config, config, texts, batch_size).result()


def accuracy(docs, labels, known) -> tuple[float, int]:
    pairs = [(lang, label) for (lang, _), label in zip(docs, labels) if lang in known]
    return sum(lang == label for lang, label in pairs) / len(pairs), len({p[0] for p in pairs})


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown cpu"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs-per-language", type=int, default=41, help="default 41 (all 500 lines)")
    ap.add_argument("--sentences", type=int, default=12, help="sentences per document")
    ap.add_argument("--batch-size", type=int, default=256, help="documents per predict call")
    ap.add_argument("--data", type=Path, default=DATA, help=f"default {DATA}")
    ap.add_argument("--sweep", action="store_true", help="also try lingua_below thresholds")
    ap.add_argument("--high-accuracy", action="store_true",
                    help="also time the default with lingua's high accuracy mode (1.3 GB)")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} is missing: the benchmark reads ../shared/data/langid")

    docs = load_documents(args.data, args.docs_per_language, args.sentences)
    texts = [text for _, text in docs]
    configs = {"fastText alone": LangIdConfig(backends=("fasttext",)), "default": LangIdConfig()}
    if args.high_accuracy:
        configs["default, lingua high accuracy"] = LangIdConfig(lingua_low_accuracy=False)
    runs = {name: in_fresh_process(cfg, texts, args.batch_size) for name, cfg in configs.items()}

    alone, default = runs["fastText alone"], runs["default"]
    by_lang: dict[str, list[int]] = {}
    for i, (lang, _) in enumerate(docs):
        by_lang.setdefault(lang, []).append(i)
    print("| language | documents | fastText alone | default | most common wrong label "
          "(fastText alone / default) |")
    print("|---|---|---|---|---|")
    for lang, idx in by_lang.items():
        cells = []
        wrong = []
        for run in (alone, default):
            got = [run["labels"][i] for i in idx]
            acc = sum(g == lang for g in got) / len(got)
            cells.append(f"{acc:.2f}" if lang in run["known"] else f"({acc:.2f})")
            miss = Counter(g for g in got if g != lang).most_common(1)
            wrong.append(f"{miss[0][0]} ×{miss[0][1]}" if miss else "–")
        print(f"| {lang} | {len(idx)} | {cells[0]} | {cells[1]} | {wrong[0]} / {wrong[1]} |")
    print("\n(accuracy) in brackets: a language the configuration has no label for, not counted.\n")

    both = alone["known"] & default["known"]
    print("| configuration | languages known | accuracy over them | accuracy over the "
          f"{len({lang for lang, _ in docs} & both)} both know | documents/s | setup | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        acc, n_langs = accuracy(docs, run["labels"], run["known"])
        acc_both, _ = accuracy(docs, run["labels"], both)
        print(f"| {name} | {n_langs} | {acc:.4f} | {acc_both:.4f} | {run['docs_per_s']:,.0f} | "
              f"{run['setup_s']:.1f} s | {run['peak_rss_mb']:,.0f} MB |")
    print(f"\n{len(docs)} documents of {args.sentences} sentences, "
          f"batches of {args.batch_size}; {cpu_name()}, {len(os.sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}.")

    if args.sweep:
        sweep(docs, texts, alone, args.batch_size)


def sweep(docs, texts, alone, batch_size) -> None:
    """Accuracy vs how many documents lingua is asked about, for several thresholds."""
    from pipelines.filters.langid import LanguageIdentifier

    print("\nAt 0.0 lingua decides only inside the confusable groups, so the languages lid.176 has "
          "no label for count as wrong.")
    print("\n| lingua_below | accuracy (known) | documents lingua decides by score |")
    print("|---|---|---|")
    for below in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        lid = LanguageIdentifier(dataclasses.replace(LangIdConfig(), lingua_below=below))
        labels = []
        for i in range(0, len(texts), batch_size):
            labels += [code for code, _ in lid.predict(texts[i:i + batch_size])]
        acc, _ = accuracy(docs, labels, lid.known_languages())
        routed = sum(1 for text in texts if _top_score(lid, text) < below)
        print(f"| {below:.1f} | {acc:.4f} | {routed / len(texts):.1%} |")


def _top_score(lid, text: str) -> float:
    return lid._fasttext.predict([" ".join(text.split())], k=1)[0][0][1]


if __name__ == "__main__":
    main()
