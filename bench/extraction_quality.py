"""Extraction quality and speed of trafilatura and resiliparse, and a profile of our extraction.

    .venv/bin/python bench/extraction_quality.py [--quality-only] [--records 1200]
        [--stage-workers 1,2] [--top 25]
    bench/.venv-datatrove/bin/python bench/extraction_quality.py --quality-only   # trafilatura 1.11

1. Quality, on ../shared/data/extraction: 80 real pages with snippets that the main text must
   contain (`with`) and must not contain (`without`), trafilatura's own evaluation set. For each
   setting: the share of `with` snippets found (recall), of `without` snippets absent, precision
   and F1 as trafilatura's benchmark counts them (a snippet found = true positive, a `without`
   found = false positive), pages with no text, titles and dates equal to evaldata.json's (on the
   pages that give one; settings without metadata have none), CPU milliseconds per page.
   Snippets and text are compared with white space collapsed.
2. Profile (skipped with --quality-only): cProfile of a plain loop of our extraction (exactly what
   the extract stage runs per page: `pipelines.extract.html.extract_page` with our settings) over the
   benchmark's ~1,200 WARC records (`bench/bench_input.py`), grouped into what trafilatura spends
   it on, plus the top functions; then the same records through the real extract stage
   (`corpus build --until extract`) with 1 and 2 Beam workers, to show what the Beam job adds on
   top of the plain loop.

Settings: "pipeline" is `pipelines.extract.html.extract_page` with the extract stage's defaults
(`ExtractConfig`: balanced mode, no fallback extractors, metadata from `pipelines/extract/page_meta.py`),
exactly what the stage's child process runs; "pipeline, ..." changes one of them ("--extractor
resiliparse": resiliparse 2.0's `extract_plain_text(tree, main_content=True)` and the same
metadata rules on its lexbor tree). "resiliparse text alone" rows are
`extract_plain_text(HTMLTree.parse(html), main_content=True, ...)` without metadata (what the
metadata costs, and how its options score), on the same decoded pages. "ours" is the
earlier call, `bare_extraction(favor_precision=True, with_metadata=True, include_comments=False,
include_tables=False)` (trafilatura's own metadata), and the rows after it change one thing (or
two). "datatrove" is what datatrove's Trafilatura step calls: `extract(
favor_precision=True, include_comments=False, deduplicate=True)` (text output, no metadata). Pages
are decoded the way the pipeline decodes them (`pipelines.extract.html.decode_html`) when this runs in our
environment; elsewhere trafilatura decodes the bytes itself. Under trafilatura 1.x `fast` is
spelled `no_fallback`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_input  # noqa: E402

OURS = dict(favor_precision=True, with_metadata=True, include_comments=False,
            include_tables=False)
# trafilatura's own date settings with extensive_search off (1.x needs max_date spelled out)
BASIC_DATE = {"original_date": True, "extensive_search": False,
              "max_date": time.strftime("%Y-%m-%d")}
SETTINGS: list[tuple[str, dict]] = [
    ("pipeline: extract_page, the extract stage's defaults", {"pipeline": True}),
    ("pipeline, fast=False (--extract-fallbacks)", {"pipeline": True, "fast": False}),
    ("pipeline, favor_precision=True", {"pipeline": True, "favor_precision": True}),
    ("pipeline: extract_page, --extractor resiliparse", {"pipeline": True,
                                                         "extractor": "resiliparse"}),
    ("resiliparse text alone, its defaults (DCLM's call)", {"resiliparse": {}}),
    ("resiliparse text alone, comments=False", {"resiliparse": {"comments": False}}),
    ("resiliparse text alone, alt_texts=False", {"resiliparse": {"alt_texts": False}}),
    ("resiliparse text alone, comments=False, alt_texts=False (the pipeline's call)",
     {"resiliparse": {"comments": False, "alt_texts": False}}),
    ("resiliparse text alone, ... and post_meta=False",
     {"resiliparse": {"comments": False, "alt_texts": False, "post_meta": False}}),
    ("ours", OURS),
    ("ours, fast=True", {**OURS, "fast": True}),
    ("ours, with_metadata=False", {**OURS, "with_metadata": False}),
    ("ours, favor_precision=False", {**OURS, "favor_precision": False}),
    ("ours, include_tables=True", {**OURS, "include_tables": True}),
    ("ours, no extensive date search", {**OURS, "date_extraction_params": BASIC_DATE}),
    ("ours, fast=True, no extensive date search",
     {**OURS, "fast": True, "date_extraction_params": BASIC_DATE}),
    ("ours, fast=True, with_metadata=False", {**OURS, "fast": True, "with_metadata": False}),
    ("datatrove: extract(favor_precision, deduplicate)", {"datatrove": True}),
]

# Where trafilatura's time goes: (label, substrings of "file:function" matched in the profile).
# Cumulative times of nested groups overlap; each row is read on its own, as a share of the total.
GROUPS = [
    ("WARC reading (warcio, gzip)", ["warcio/", "bench_input.py:iter_records"]),
    ("decoding bytes (decode_html, charset detection)", ["html.py:decode_html"]),
    ("  charset_normalizer (undeclared non-UTF-8 pages)", ["charset_normalizer/api.py:from_bytes"]),
    ("bare_extraction, all of it", ["trafilatura/core.py:bare_extraction"]),
    ("  HTML parsing (load_html, lxml)", ["trafilatura/utils.py:load_html"]),
    ("  metadata (extract_metadata), all of it", ["trafilatura/metadata.py:extract_metadata"]),
    ("    date (htmldate find_date)", ["htmldate/core.py:find_date"]),
    ("    JSON-LD / meta / title / author", ["trafilatura/json_metadata.py:",
                                             "trafilatura/metadata.py:examine_meta",
                                             "trafilatura/metadata.py:extract_title",
                                             "trafilatura/metadata.py:extract_author"]),
    ("  trafilatura_sequence (main text + fallbacks)", ["trafilatura/core.py:trafilatura_sequence"]),
    ("    tree cleaning (tree_cleaning, prune)", ["trafilatura/htmlprocessing.py:tree_cleaning",
                                                  "trafilatura/htmlprocessing.py:prune_unwanted_nodes"]),
    ("    main extraction (extract_content)", ["trafilatura/main_extractor.py:extract_content"]),
    ("    comments (extract_comments)", ["trafilatura/main_extractor.py:extract_comments"]),
    ("    fallbacks, all of it (compare_extraction)", ["trafilatura/external.py:compare_extraction"]),
    ("      readability-lxml (try_readability)", ["trafilatura/external.py:try_readability"]),
    ("      jusText (try_justext)", ["trafilatura/external.py:try_justext"]),
    ("      baseline (html2txt / baseline)", ["trafilatura/baseline.py:baseline",
                                              "trafilatura/baseline.py:html2txt"]),
    ("      lxml_html_clean Cleaner (sanitize for fallbacks)", ["lxml_html_clean/clean.py:clean_html",
                                                                "lxml/html/clean.py:clean_html"]),
    ("  text output (xmltotxt)", ["trafilatura/xml.py:xmltotxt"]),
    ("  deepcopy / copy of trees", ["copy.py:deepcopy"]),
]


def collapse(text: str) -> str:
    return " ".join(text.split())


def trafilatura_major() -> int:
    import trafilatura

    return int(trafilatura.__version__.split(".")[0])


def decoder():
    """The pipeline's decoder when importable here, else None (trafilatura decodes bytes)."""
    try:
        sys.path.insert(0, str(ROOT))
        from pipelines.extract.html import decode_html

        return decode_html
    except Exception:
        return None


def make_extractor(options: dict):
    """(body bytes, url, content_type) -> (text, title, date) for one setting."""
    import trafilatura

    decode = decoder()
    options = dict(options)
    if options.pop("pipeline", False):  # exactly what the extract stage's child process runs
        from pipelines.extract.html import extract_page
        from schemas.config import ExtractConfig

        stage = ExtractConfig()  # the extract stage's defaults, then this setting's change
        options = {"favor_precision": stage.favor_precision, "include_tables": stage.include_tables,
                   "fast": stage.fast, **options}

        def run(body, url, content_type):
            result = extract_page(body, url, content_type, options)
            if result is None:
                return "", None, None
            return result["text"], result["title"], result["date"]
        return run
    if "resiliparse" in options:  # resiliparse's main-content text with these options
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        kwargs = options.pop("resiliparse")

        def run(body, url, content_type):
            html = decode(body, content_type)[0] if decode else body.decode("utf-8", "replace")
            return extract_plain_text(HTMLTree.parse(html), main_content=True, **kwargs), \
                None, None
        return run
    if options.pop("datatrove", False):
        def run(body, url, content_type):
            try:
                html = body.decode("utf-8")
            except UnicodeDecodeError:  # datatrove's WarcReader: cchardet when not UTF-8
                try:
                    import cchardet

                    html = body.decode(cchardet.detect(body)["encoding"] or "utf-8", "replace")
                except ImportError:
                    html = decode(body, content_type)[0] if decode else body
            text = trafilatura.extract(html, favor_precision=True, include_comments=False,
                                       deduplicate=True)
            return text or "", None, None
        return run
    if trafilatura_major() < 2 and "fast" in options:
        options["no_fallback"] = options.pop("fast")

    def run(body, url, content_type):
        html = decode(body, content_type)[0] if decode else body
        result = trafilatura.bare_extraction(html, url=url, **options)
        if result is None:
            return "", None, None
        if isinstance(result, dict):  # trafilatura 1.x
            return result.get("text") or "", result.get("title"), result.get("date")
        return result.text or "", result.title, result.date
    return run


def quality(data: Path, repeat: int) -> list[dict]:
    evaldata = json.loads((data / "extraction" / "evaldata.json").read_text())
    pages = [(key, (data / "extraction" / "html" / item["file"]).read_bytes(), item)
             for key, item in sorted(evaldata.items())]
    rows = []
    for label, options in SETTINGS:
        run = make_extractor(options)
        for key, body, _ in pages[:3]:  # warm-up: imports and caches are not a page's time
            run(body, bench_input.page_url(key), "text/html")
        if options.get("datatrove"):  # its dedup cache must not remember the warm-up pages
            from trafilatura.deduplication import LRU_TEST

            LRU_TEST.clear()
        timings = []
        for _ in range(repeat):
            results, started = [], time.process_time()
            for key, body, item in pages:
                results.append((run(body, bench_input.page_url(key), "text/html"), item))
            timings.append(time.process_time() - started)
            if options.get("datatrove"):
                LRU_TEST.clear()
        tp = fn = tn = fp = empty = 0
        titles, dates = [0, 0], [0, 0]
        for (text, title, date), item in results:
            text = collapse(text)
            empty += not text
            if item.get("title"):
                titles[1] += 1
                titles[0] += collapse(title or "") == collapse(item["title"])
            if item.get("date"):
                dates[1] += 1
                dates[0] += (date or "")[:10] == item["date"][:10]
            for snippet in item.get("with", []):
                found = collapse(snippet) in text
                tp, fn = tp + found, fn + (not found)
            for snippet in item.get("without", []):
                found = collapse(snippet) in text
                fp, tn = fp + found, tn + (not found)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        rows.append({"setting": label, "with_found": recall, "without_absent": tn / (tn + fp),
                     "precision": precision, "f1": 2 * precision * recall / (precision + recall)
                     if precision + recall else 0.0, "empty": empty, "titles": titles, "dates": dates,
                     "pages": len(pages), "s_per_page": statistics.median(timings) / len(pages)})
    return rows


def print_quality(rows: list[dict]) -> None:
    import trafilatura

    try:
        from importlib.metadata import version

        resiliparse = f", resiliparse {version('resiliparse')}"
    except Exception:
        resiliparse = ""
    print(f"extraction quality: trafilatura {trafilatura.__version__}{resiliparse}, "
          f"{rows[0]['pages']} pages of ../shared/data/extraction, "
          f"decoding: {'pipelines.extract.html.decode_html' if decoder() else 'trafilatura'}")
    print()
    print("| setting | `with` found | `without` absent | precision | F1 | no text | title right "
          "| date right | CPU ms/page |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['with_found']:.1%} | {r['without_absent']:.1%} | "
              f"{r['precision']:.3f} | {r['f1']:.3f} | {r['empty']} | "
              f"{r['titles'][0]}/{r['titles'][1]} | {r['dates'][0]}/{r['dates'][1]} | "
              f"{1000 * r['s_per_page']:.1f} |")


# ---------------------------------------------------------------- profile

def our_extract_page():
    """The extract stage's per-page function and options (pipelines.extract.html), or a stand-in."""
    sys.path.insert(0, str(ROOT))
    try:
        from pipelines.extract.html import extract_page
        from schemas.config import ExtractConfig

        cfg = ExtractConfig()
        options = {"favor_precision": cfg.favor_precision, "include_tables": cfg.include_tables,
                   "fast": getattr(cfg, "fast", False)}
        return (lambda body, url, ctype: extract_page(body, url, ctype, options)), \
            f"pipelines.extract.html.extract_page with {options}"
    except ImportError:
        run = make_extractor(OURS)
        return run, f"trafilatura.bare_extraction({OURS})"


def plain_loop(paths, extract) -> tuple[int, float, float]:
    n, wall, cpu = 0, time.perf_counter(), time.process_time()
    for url, body in bench_input.iter_records(paths):
        extract(body, url, "text/html")
        n += 1
    return n, time.perf_counter() - wall, time.process_time() - cpu


def grouped(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Seconds per GROUPS row: cumulative time of the named functions ("path:function" suffixes),
    or the own time of every function of a package (a needle ending in "/")."""
    out = []
    for label, needles in GROUPS:
        secs = 0.0
        for (file, _line, func), (_cc, _nc, tottime, cumtime, _callers) in stats.stats.items():
            key = f"{file}:{func}"
            for needle in needles:
                if needle.endswith("/") and needle in file:
                    secs += tottime
                    break
                if key.endswith(needle):
                    secs += cumtime
                    break
        out.append((label, secs))
    return out


def profile(paths, top: int) -> dict:
    extract, what = our_extract_page()
    for url, body in list(bench_input.iter_records(paths))[:3]:
        extract(body, url, "text/html")  # warm-up: imports
    n, wall, cpu = plain_loop(paths, extract)
    print(f"plain loop, one process, no profiler: {n} records, {wall:.1f} s wall, {cpu:.1f} s "
          f"CPU, {1000 * cpu / n:.1f} ms CPU/record ({what})")
    profiler = cProfile.Profile()
    profiler.enable()
    plain_loop(paths, extract)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    print()
    print(f"cProfile of the same loop ({total:.1f} s under the profiler; shares are of that; "
          "nested rows overlap):")
    print()
    print("| where | seconds | share |")
    print("|---|---|---|")
    for label, secs in grouped(stats):
        print(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {secs:.1f} | {secs / total:.0%} |")
    print()
    print(f"top {top} functions by own time:")
    print()
    buf = io.StringIO()
    pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(top)
    lines = buf.getvalue().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("ncalls"))
    print("```")
    print("\n".join(ln for ln in lines[start:] if ln.strip()))
    print("```")
    return {"records": n, "wall": wall, "cpu": cpu}


def stage_run(warc_dir: Path, workers: int, work: Path) -> dict:
    """`corpus build --until extract` on the bench records: the stage's seconds from its manifest,
    and the whole command's wall and CPU seconds (process tree, as extract_vs_datatrove measures)."""
    from extract_vs_datatrove import measure

    out = work / f"stage-w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    corpus = Path(sys.executable).with_name("corpus")
    cmd = [str(corpus), "build", "--input", str(warc_dir), "--output", str(out), "--until",
           "extract", "--workers", str(workers), "--running-mode", "multi_processing"]
    m = measure(cmd, work / f"stage-w{workers}.log")
    manifest = json.loads((out / "extract" / "manifest.json").read_text())
    return {"workers": workers, "stage": manifest["metrics"]["seconds"], "wall": m["wall"],
            "cpu": m["cpu"], "records": manifest["counts"]["records_in"],
            "out": manifest["counts"]["records_out"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality-only", action="store_true", help="skip the profile")
    ap.add_argument("--repeat", type=int, default=1, help="timing passes per setting")
    ap.add_argument("--records", type=int, default=1200, help="bench records to profile")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--stage-workers", default="1,2",
                    help="Beam worker counts for the extract stage comparison ('' to skip)")
    ap.add_argument("--top", type=int, default=25, help="functions listed by own time")
    ap.add_argument("--work", help="work folder (default: a temp folder, removed)")
    ap.add_argument("--data", default=str(bench_input.DEFAULT_DATA))
    args = ap.parse_args()

    for name in ("trafilatura", "htmldate", "courlan", "charset_normalizer", "readability",
                 "justext"):
        import logging

        logging.getLogger(name).setLevel(logging.CRITICAL)
    print_quality(quality(Path(args.data), args.repeat))
    if args.quality_only:
        return
    print()
    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="extract-prof-"))
    try:
        paths = bench_input.build(work / "input", args.records, args.files, args.data)
        plain = profile(paths, args.top)
        counts = [int(w) for w in args.stage_workers.split(",") if w.strip()]
        if counts:
            print()
            print("the extract stage on the same records (`corpus build --until extract`):")
            print()
            print("| run | records | stage s (manifest) | command wall s | command CPU s "
                  "| CPU ms/record | vs plain loop |")
            print("|---|---|---|---|---|---|---|")
            per = plain["cpu"] / plain["records"]
            print(f"| plain loop, 1 process | {plain['records']} | - | {plain['wall']:.1f} | "
                  f"{plain['cpu']:.1f} | {1000 * per:.1f} | 1.00x |")
            for w in counts:
                s = stage_run(work / "input", w, work)
                cpu = s["cpu"] / s["records"]
                print(f"| `corpus build --until extract --workers {w}` | {s['records']} | "
                      f"{s['stage']:.1f} | {s['wall']:.1f} | {s['cpu']:.1f} | {1000 * cpu:.1f} | "
                      f"{cpu / per:.2f}x |")
            print()
            print("command CPU s: every process of the command (Prefect, the Beam runner, its "
                  "workers, their extraction children), start-up included; stage s: the Beam job "
                  "alone (wall).")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
