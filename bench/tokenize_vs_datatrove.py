"""Tokenize and pack: our tokenize stage against datatrove 0.10.1's DocumentTokenizer + merger, the
same Parquet corpus, the same tokenizer file, same machine, same run.

    .venv/bin/python bench/tokenize_vs_datatrove.py [--docs 25000] [--seed 0] [--files 16]
        [--workers 2] [--repeat 1] [--only ours|ours-threads|datatrove] [--work DIR]
        [--shuffle-seed 0] [--vocab 32000] [--tokenizer-mb 20] [--no-netns] [--keep]

Input: the corpus of `bench/dedup_vs_datatrove.py` (`bench/dedup_corpus.py`: --docs base documents
of real sentences in 14 languages plus ~8% planted copies, in --files Parquet files of our document
schema), built once per (docs, seed, files) under the work folder (default
$TMPDIR/corpus-dedup-bench, shared with that benchmark) and reused while its corpus.json matches.

Tokenizer: a byte-level BPE of --vocab tokens (min frequency 2), trained once per corpus by
`pipelines.tokens.tokenizer.train_tokenizer` on the first --tokenizer-mb MB of text of the corpus (its
files in name order, whole documents), saved as WORK/tokenizers/<corpus>-vocab<V>-<MB>MB/
tokenizer.json and reused. `<|endoftext|>` is its first special token (id 0); both sides load
this one file, and both end every document with it. Training is not timed.

Ours (sides `ours`: Beam FnApiRunner, --workers worker processes, running_mode multi_processing;
`ours-threads`: --workers threads in one process, multi_threading), each in a subprocess of this
script (`--_ours-job`), the stage's job as `tests/test_tokenize.py::pack` runs it, no Prefect:
`StageDir(OUT, "tokenize")`, `stage.reset()`, `pipelines.tokens.stage.build_tokenize(stage, urls,
TokenizeConfig(tokenizer=TOKENIZER_JSON), --shuffle-seed, engine)` (load and check the tokenizer,
copy it into the stage, `plan_shards`: Parquet footers plus a 1 MiB encoding probe for the shard
count; then one Beam job: read id/url/text -> encode_batch of 256 documents -> sorted runs on disk
-> group the runs' names by shard -> one worker merges each shard's runs into its .bin/.idx), then
`token_info` (reads every .idx, sha256 of every file). TokenizeConfig's defaults otherwise: a 10%
validation split by a hash of the id, shards of about 100M tokens, documents in a global seeded
order (sorted by a hash of id and seed). The job times its phases by wrapping the module's
`dataset_tokenizer`, `plan_shards`, `run_pipeline` and `clean_work` where they exist.

Datatrove: `bench/tokenize_datatrove_job.py` inside `bench/.venv-datatrove` (made by
`bench/extract_vs_datatrove.py`'s `ensure_datatrove_env`), two LocalPipelineExecutor runs:
1. ParquetReader(read_metadata=False) -> DocumentTokenizer(tokenizer_name_or_path=TOKENIZER_JSON,
   eos_token="<|endoftext|>", seed=--shuffle-seed): one task per Parquet file, --workers
   processes; each task encodes its file (batches of 10,000, datatrove's default), writes it
   unshuffled, then rewrites it in a seeded random order (shuffle within the file);
2. DocumentTokenizerMerger(seed=--shuffle-seed, max_tokens_per_file=100M, our shard size): one
   task, interleaves the shuffled files in a seeded random order: a global shuffle.
Datatrove has no validation split; ours writes train and val shards. Both totals count all splits.

Measured per run, as in `bench/extract_vs_datatrove.py` (whose `measure` this imports): wall
seconds of the whole command (interpreter, imports and engine start-up included), CPU seconds and
peak memory of the whole process tree (/proc every 0.1 s: RSS summed over processes, and PSS,
which counts pages shared by forked workers once), and the machine's CPU and memory stall seconds
meanwhile. Both sides run in a network namespace of their own when `unshare -n` works, so neither
can download anything (datatrove's tokenizer loads from the local path or fails).

Checked after each run, outside the timing: each side's token files are read back (ours: the
.bin/.idx that token_info lists; datatrove: the merged .ds/.ds.index) for documents, tokens, files,
documents that do not end with the end token or hold it inside, and an order-free digest of the
documents (sha256 over the sorted blake2b of each document's token bytes). Equal digests: both
sides wrote the same documents, token for token, each once; equal token totals then follow. The
corpus's documents with non-empty text are counted from the Parquet files (both sides skip empty
texts). Linux only (/proc). On a shared machine timings are noisy: compare CPU seconds as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

# dedup_corpus, dedup_vs_datatrove, extract_vs_datatrove and machine are bench/ modules (bench/ is
# sys.path[0] when this runs as a script), imported in main() and the report, so that the ours
# job's subprocess, which runs this file too, does not pay for them. The repository root is added
# for pipelines/ and schemas/, imported inside the functions that need them.

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

SIDES = ("ours", "ours-threads", "datatrove")
OURS_MODES = {"ours": "multi_processing", "ours-threads": "multi_threading"}
EOT = "<|endoftext|>"
SHARD_TOKENS = 100_000_000  # TokenizeConfig.shard_tokens' default; datatrove's merger gets it too
OUR_PHASES = ("dataset_tokenizer", "plan_shards", "run_pipeline", "clean_work")
OUR_MODULES = ("pipelines/tokens/stage.py", "pipelines/tokens/pack.py", "pipelines/tokens/tokenizer.py",
               "pipelines/core/engine.py")


# ---------------------------------------------------------------- tokenizer

def tokenizer_path(work: Path, corpus: Path, vocab: int, mb: int) -> Path:
    return work / "tokenizers" / f"{corpus.name}-vocab{vocab}-{mb}MB" / "tokenizer.json"


def ensure_tokenizer(path: Path, docs_dir: Path, vocab: int, mb: int) -> dict:
    """Train the shared tokenizer once (first `mb` MB of the corpus's text); return its info."""
    info_path = path.with_name("info.json")
    if path.exists() and info_path.exists():
        return json.loads(info_path.read_text())
    from pipelines.tokens.tokenizer import train_tokenizer

    limit, taken = mb * 1_000_000, {"documents": 0, "bytes": 0}

    def texts():
        for file in sorted(docs_dir.glob("*.parquet")):
            for batch in pq.ParquetFile(file).iter_batches(columns=["text"], batch_size=1024):
                for text in batch.column(0).to_pylist():
                    if not text:
                        continue
                    taken["documents"] += 1
                    taken["bytes"] += len(text.encode("utf-8"))
                    yield text
                    if taken["bytes"] >= limit:
                        return

    print(f"training the tokenizer ({vocab:,} tokens, first {mb} MB of text) -> {path} ...",
          file=sys.stderr, flush=True)
    started = time.perf_counter()
    tokenizer = train_tokenizer(texts(), vocab, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tokenizer.to_str(), encoding="utf-8")
    tmp.rename(path)
    info = {**taken, "vocab_size": tokenizer.get_vocab_size(), "eot_id": tokenizer.token_to_id(EOT),
            "seconds": round(time.perf_counter() - started, 1),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    info_path.write_text(json.dumps(info, indent=1))
    return info


# ---------------------------------------------------------------- ours

def run_ours_job(docs_dir: str, out_root: str, workers: int, mode: str, tokenizer: str,
                 seed: int) -> None:
    """The subprocess of the ours side: the tokenize stage's job, then a JSON summary line."""
    started = time.perf_counter()
    from pipelines.core.contract import StageDir
    from pipelines.tokens import stage as tokenize
    from schemas.config import EngineConfig, TokenizeConfig

    phases: dict[str, float] = {"imports": time.perf_counter() - started}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    for name in OUR_PHASES:  # module globals, looked up by build_tokenize at call time
        if callable(getattr(tokenize, name, None)):
            setattr(tokenize, name, timed(name, getattr(tokenize, name)))
    config = TokenizeConfig(tokenizer=tokenizer)
    stage = StageDir(out_root, "tokenize")
    stage.reset()
    urls = sorted(str(p) for p in Path(docs_dir).glob("*.parquet"))
    engine = EngineConfig(workers=workers, running_mode=mode)
    t = time.perf_counter()
    counters, source = tokenize.build_tokenize(
        stage, urls, config, seed, engine, log=lambda m: print(m, file=sys.stderr, flush=True))
    phases["build_tokenize"] = time.perf_counter() - t
    t = time.perf_counter()
    info = tokenize.token_info(stage, "-", config, seed, source)
    phases["token_info"] = time.perf_counter() - t
    shards = {split: [{"bin": s.bin, "idx": s.idx, "tokens": s.tokens, "documents": s.documents}
                      for s in info.splits.get(split, [])] for split in info.splits}
    print(json.dumps({"counters": counters, "phases": phases, "shards": shards,
                      "dtype": info.dtype, "eot_id": info.eot_id,
                      "estimate": source.get("estimate"),
                      "shards_planned": source.get("shards_planned"),
                      "module": tokenize.__file__}))


def ours_command(docs_dir: Path, out: Path, workers: int, mode: str, tokenizer: Path,
                 seed: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--_ours-job", str(docs_dir),
            str(out), str(workers), mode, str(tokenizer), str(seed)]


def last_json(log: Path) -> dict:
    return json.loads([ln for ln in log.read_text(errors="replace").splitlines()
                       if ln.startswith("{")][-1])


def ours_result(out: Path, log: Path) -> dict:
    summary = last_json(log)
    stage = out / "tokenize"
    files = [(stage / s["bin"], stage / s["idx"]) for split in summary["shards"]
             for s in summary["shards"][split]]
    check = read_token_files(files, summary["dtype"], summary["eot_id"])
    counters = summary["counters"]
    counted = sum(v for k, v in counters.items() if k.startswith("tokenize/tokens_"))
    by_split = {split: (sum(s["documents"] for s in shards), sum(s["tokens"] for s in shards),
                        len(shards)) for split, shards in summary["shards"].items()}
    return {**check, "phases": summary["phases"], "counters": counters, "by_split": by_split,
            "estimate": summary.get("estimate"), "module": summary["module"],
            "accounted": counted == check["tokens"]
            and counters.get("tokenize/records_in") is not None}


# ---------------------------------------------------------------- datatrove

def datatrove_command(docs_dir: Path, out: Path, workers: int, tokenizer: Path,
                      seed: int) -> list[str]:
    from extract_vs_datatrove import dt_python

    return [str(dt_python()), str(BENCH / "tokenize_datatrove_job.py"), "--input", str(docs_dir),
            "--output", str(out), "--tokenizer", str(tokenizer), "--workers", str(workers),
            "--seed", str(seed), "--max-tokens-per-file", str(SHARD_TOKENS), "--eos-token", EOT]


def datatrove_result(out: Path, log: Path, dtype: str, eot_id: int) -> dict:
    summary = last_json(log)
    merged = out / "merged"
    files = [(merged / f["file"], merged / (f["file"] + ".index")) for f in summary["merged"]]
    check = read_token_files(files, dtype, eot_id)
    stat_tokens = [s["counts"].get("tokens") for step in summary["steps"]
                   for s in step["pipeline"] if "tokens" in s["counts"]]
    return {**check, "steps": summary["steps"], "tokenized": summary["tokenized"],
            "accounted": summary["tokens"] == check["tokens"] == summary["tokenized"]["tokens"]
            and all(t == check["tokens"] for t in stat_tokens)}


# ---------------------------------------------------------------- checks

def read_token_files(files: list[tuple[Path, Path]], dtype: str, eot_id: int) -> dict:
    """Documents, tokens and an order-free digest of token files (tokens + uint64 end offsets)."""
    digests, tokens, bad_end, eot_inside = [], 0, 0, 0
    for bin_path, idx_path in files:
        ends = np.fromfile(idx_path, dtype="<u8").astype(np.int64)
        if not len(ends):
            continue
        ids = np.memmap(bin_path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")
        if len(ids) != ends[-1]:
            raise SystemExit(f"{bin_path}: {len(ids)} tokens, its index says {ends[-1]}")
        tokens += int(ends[-1])
        start = 0
        for end in ends:
            doc = ids[start:end]
            digests.append(hashlib.blake2b(doc.tobytes(), digest_size=16).digest())
            if not len(doc) or doc[-1] != eot_id:
                bad_end += 1
            elif (doc[:-1] == eot_id).any():
                eot_inside += 1
            start = end
        del ids
    digests.sort()
    return {"documents": len(digests), "tokens": tokens, "files": len(files),
            "digest": hashlib.sha256(b"".join(digests)).hexdigest(), "bad_end": bad_end,
            "eot_inside": eot_inside}


def corpus_nonempty(docs_dir: Path) -> tuple[int, int]:
    """(documents, documents with non-empty text) of the corpus."""
    total = nonempty = 0
    for file in sorted(docs_dir.glob("*.parquet")):
        col = pq.read_table(file, columns=["text"]).column("text")
        total += len(col)
        nonempty += int(pc.sum(pc.greater(pc.fill_null(pc.binary_length(col), 0), 0)).as_py()
                        or 0)
    return total, nonempty


def module_hashes() -> dict[str, str]:
    out = {}
    for rel in OUR_MODULES:
        p = ROOT / rel
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:12] if p.exists() else "-"
    return out


# ---------------------------------------------------------------- report

def mib(n: float) -> float:
    return n / 2**20


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def report(rows: list[dict], sides: list[str], meta: dict, tok: dict, args, isolated: bool,
           load: str, nonempty: int, hashes: dict) -> dict:
    from machine import cpu_name

    med = {}
    for side in sides:
        rs = [r for r in rows if r["side"] == side]
        m = {k: statistics.median(r[k] for r in rs)
             for k in ("wall", "cpu", "peak_rss", "peak_pss")}
        for k in ("cpu_stall", "mem_stall"):  # None where the kernel has no PSI
            m[k] = None if None in (vals := [r[k] for r in rs]) else statistics.median(vals)
        m["tokens_per_s"] = statistics.median(r["tokens"] / r["wall"] for r in rs)
        m["cpu_per_mtok"] = statistics.median(r["cpu"] / (r["tokens"] / 1e6) for r in rs)
        m["peak_rss_mib"], m["peak_pss_mib"] = mib(m["peak_rss"]), mib(m["peak_pss"])
        last = rs[-1]
        m.update(tokens=last["tokens"], documents=last["documents"], files=last["files"],
                 digest=last["digest"])
        med[side] = m

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"load average before: {load}")
    print(f"corpus: {meta['documents']:,} documents ({nonempty:,} with text), "
          f"{meta['text_bytes'] / 1e6:,.0f} MB of text in {meta['files']} Parquet files "
          f"(bench/dedup_corpus.py, {meta['base_docs']:,} base documents, seed {meta['seed']}); "
          f"{args.workers} workers each side; network: "
          f"{'none (unshare -n)' if isolated else 'not isolated'}")
    print(f"tokenizer: byte-level BPE, {tok['vocab_size']:,} tokens (min frequency 2), trained on "
          f"the first {tok['bytes'] / 1e6:.1f} MB ({tok['documents']:,} documents) of the corpus "
          f"in {tok['seconds']} s, sha256 {tok['sha256'][:12]}; end token {EOT} = id "
          f"{tok['eot_id']}; shuffle seed {args.shuffle_seed}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    for side in (s for s in sides if s in OURS_MODES):
        r = [x for x in rows if x["side"] == side][-1]
        split = ", ".join(f"{k}: {d:,} documents / {t:,} tokens / {n} shard(s)"
                          for k, (d, t, n) in r["by_split"].items())
        print(f"{side}: build_tokenize + token_info, Beam FnApiRunner, {args.workers} workers, "
              f"running_mode {OURS_MODES[side]}; {split}; from {r['module']} "
              f"({', '.join(f'{k} {v}' for k, v in hashes.items())})")
    if "datatrove" in sides:
        r = [x for x in rows if x["side"] == "datatrove"][-1]
        print(f"datatrove: ParquetReader -> DocumentTokenizer ({meta['files']} tasks, shuffle "
              f"within each file) then DocumentTokenizerMerger (1 task, global shuffle, at most "
              f"{SHARD_TOKENS:,} tokens a file): {r['tokenized']['files']} per-file outputs -> "
              f"{r['files']} merged file(s)")
    print()

    ours_sides = [s for s in sides if s in OURS_MODES] if "datatrove" in sides else []

    def ratio(side, key):
        d, o = med["datatrove"].get(key), med[side].get(key)
        return "" if not d or o is None else f"{o / d:.2f}x"

    table = [
        ("wall s", "wall", ".1f", True),
        ("tokens/s (wall)", "tokens_per_s", ",.0f", True),
        ("CPU s (tree)", "cpu", ".1f", True),
        ("CPU s per million tokens", "cpu_per_mtok", ".2f", True),
        ("peak memory MiB (RSS, tree)", "peak_rss_mib", ",.0f", True),
        ("peak memory MiB (PSS, tree)", "peak_pss_mib", ",.0f", True),
        ("tokens written", "tokens", ",d", True),
        ("documents written", "documents", ",d", True),
        ("token files", "files", ",d", False),
        ("system CPU stall s meanwhile (others' load or own oversubscription)", "cpu_stall", ".0f", False),
    ]
    head = " | ".join(sides + [f"{s}/datatrove" for s in ours_sides])
    print(f"| {'median' if args.repeat > 1 else 'run'} | {head} |")
    print("|---" * (len(sides) + 1 + len(ours_sides)) + "|")
    for label, key, spec, with_ratio in table:
        cells = [fmt(med[s].get(key), spec) for s in sides]
        cells += [ratio(s, key) if with_ratio else "" for s in ours_sides]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()

    digests = {med[s]["digest"] for s in sides}
    totals = {med[s]["tokens"] for s in sides}
    line = ("tokens written: " + ", ".join(f"{s} {med[s]['tokens']:,}" for s in sides))
    if len(sides) > 1:
        line += ("; the same total" if len(totals) == 1 else "; TOTALS DIFFER")
        line += ("; the same documents token for token (order-free digest "
                 f"{next(iter(digests))[:16]})" if len(digests) == 1
                 else "; DOCUMENT DIGESTS DIFFER")
    print(line + f". Documents with text in the corpus: {nonempty:,}; every side wrote one end "
          "token per document" + ("" if all(r["bad_end"] == 0 for r in rows)
                                  else " EXCEPT where noted below") + ".")

    for side in (s for s in sides if s in OURS_MODES):
        print()
        print(f"{side}, phases (seconds inside the job; the rest of wall is interpreter start-up "
              f"and exit):")
        print()
        names = ["imports", *OUR_PHASES, "build_tokenize", "token_info"]
        print("| run | " + " | ".join(names) + " | wall |")
        print("|---" * (len(names) + 2) + "|")
        for r in (x for x in rows if x["side"] == side):
            print(f"| {r['run']} | " + " | ".join(fmt(r["phases"].get(n), ".1f") for n in names)
                  + f" | {r['wall']:.1f} |")
        print("(run_pipeline: the Beam job that reads, encodes, spills runs and merges shards; "
              "build_tokenize includes dataset_tokenizer, plan_shards, run_pipeline, clean_work)")
    if "datatrove" in sides:
        print()
        print("datatrove, steps (wall of each executor run; seconds of each pipeline step summed "
              "over its tasks, from logs/<step>/stats.json):")
        print()
        print("| run | step | wall s | pipeline steps (task-seconds) |")
        print("|---|---|---|---|")
        for r in (x for x in rows if x["side"] == "datatrove"):
            for step in r["steps"]:
                inner = ", ".join(f"{p['name']} {p['seconds'] or 0:.1f}" for p in step["pipeline"])
                print(f"| {r['run']} | {step['step']} ({step['tasks']} tasks, {step['workers']} "
                      f"workers) | {step['wall']:.1f} | {inner} |")
    if len(rows) > len(sides):
        print()
        print("| run | side | wall s | CPU s | peak RSS MiB | peak PSS MiB | tokens | "
              "system stall s: cpu / memory |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['run']} | {r['side']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                  f"{mib(r['peak_rss']):,.0f} | {mib(r['peak_pss']):,.0f} | {r['tokens']:,} | "
                  f"{fmt(r['cpu_stall'], '.0f')} / {fmt(r['mem_stall'], '.0f')} |")
    for r in rows:
        if not r["accounted"]:
            print(f"WARNING: {r['side']} run {r['run']}: the token files disagree with the "
                  "side's own counts")
        if r["bad_end"]:
            print(f"WARNING: {r['side']} run {r['run']}: {r['bad_end']} documents do not end "
                  f"with {EOT}")
        if r["eot_inside"]:
            print(f"NOTE: {r['side']} run {r['run']}: {r['eot_inside']} documents hold {EOT} "
                  "before their end (text that quotes it, encoded as the special token)")
        if r["documents"] != nonempty:
            print(f"WARNING: {r['side']} run {r['run']}: {r['documents']:,} documents written, "
                  f"the corpus has {nonempty:,} with text")
    return med


# ---------------------------------------------------------------- main

def main() -> None:
    if len(sys.argv) == 8 and sys.argv[1] == "--_ours-job":
        run_ours_job(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6],
                     int(sys.argv[7]))
        return
    import shutil

    from dedup_vs_datatrove import corpus_arguments, prepare_corpus
    from extract_vs_datatrove import measure, netns_prefix
    from machine import cpu_name

    ap = corpus_arguments(__doc__.splitlines()[0], SIDES,
                          "corpora and tokenizers (kept), run outputs")
    ap.add_argument("--shuffle-seed", type=int, default=0,
                    help="seed of both sides' shuffles (default 0)")
    ap.add_argument("--vocab", type=int, default=32_000, help="tokenizer size (default 32000)")
    ap.add_argument("--tokenizer-mb", type=int, default=20,
                    help="MB of the corpus's text the tokenizer is trained on (default 20)")
    ap.add_argument("--no-netns", action="store_true", help="do not run in a network namespace")
    ap.add_argument("--keep", action="store_true", help="keep the run outputs")
    args = ap.parse_args()
    if min(args.docs, args.files, args.workers, args.repeat, args.tokenizer_mb) < 1:
        ap.error("--docs, --files, --workers, --repeat and --tokenizer-mb must be at least 1")
    if args.vocab < 258 or args.vocab > 2**16:
        ap.error("--vocab must be in 258 .. 65536 (both sides then write uint16 tokens)")
    work, sides, corpus, meta, docs_dir = prepare_corpus(ap, args, SIDES)
    tok_path = tokenizer_path(work, corpus, args.vocab, args.tokenizer_mb)
    tok = ensure_tokenizer(tok_path, docs_dir, args.vocab, args.tokenizer_mb)
    _, nonempty = corpus_nonempty(docs_dir)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    prefix = [] if args.no_netns else netns_prefix()
    hashes = module_hashes()

    rows = []
    for i in range(1, args.repeat + 1):
        for side in (sides if i % 2 else list(reversed(sides))):
            out = work / "runs" / f"tokenize-{side}-run{i}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            log = work / "runs" / f"tokenize-{side}-run{i}.log"
            print(f"run {i}/{args.repeat}: {side} -> {out}", file=sys.stderr, flush=True)
            if side in OURS_MODES:
                m = measure(prefix + ours_command(docs_dir, out, args.workers, OURS_MODES[side],
                                                  tok_path, args.shuffle_seed), log)
                m.update(ours_result(out, log))
            else:
                m = measure(prefix + datatrove_command(docs_dir, out, args.workers, tok_path,
                                                       args.shuffle_seed), log)
                m.update(datatrove_result(out, log, "uint16", tok["eot_id"]))
            m.update(run=i, side=side)
            rows.append(m)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
            print(f"  {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU, "
                  f"{mib(m['peak_rss']):,.0f} MiB peak RSS, {m['tokens']:,} tokens",
                  file=sys.stderr, flush=True)

    med = report(rows, sides, meta, tok, args, bool(prefix), load, nonempty, hashes)
    print(json.dumps({
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "load_before": load},
        "command": [Path(sys.executable).name, *sys.argv], "corpus": meta, "tokenizer": tok,
        "network_isolated": bool(prefix), "modules": hashes, "median": med, "runs": rows,
    }, default=str))


if __name__ == "__main__":
    main()
