"""`corpus quality-model train`: a fastText quality classifier trained on your examples, for the
filter stage's quality scores (README, Quality scores).

    corpus quality-model train --positive good.jsonl --negative-from DATASET --out hq.bin
    corpus build --input ... --output DIR --quality-model hq=hq.bin --quality-keep hq:top=10%

Positives and negatives are files of texts (JSON Lines, Parquet, or plain text with a blank line
between two texts); negatives may also be a seeded sample of a built dataset's corpus, the
random crawl DCLM's classifier learns to tell good text from. Missing or empty inputs, too few
examples and a dataset without a corpus are one line, exit 2.
"""

from __future__ import annotations

import os

from flows.cli.common import OneLineParser, UserError, number, positive_int, whole_number
from pipelines.filters.quality_model import (
    BUCKETS,
    DIM,
    EPOCHS,
    LEARNING_RATE,
    NEGATIVE_LABEL,
    NGRAMS,
    THRESHOLD,
    TrainingError,
    train_classifier,
)
from schemas.config import QUALITY_LABEL


def _texts(paths: list[str], text_field: str, option: str) -> list[str]:
    from pipelines.filters.quality_examples import file_texts

    texts = []
    for path in paths:
        try:
            found = list(file_texts(path, text_field))
        except TrainingError as err:
            raise UserError(f"{option} {err}") from None
        if not found:
            raise UserError(f"{option} {path}: no texts in it (JSON Lines and Parquet need a "
                            f"{text_field!r} field: --text-field names another)")
        texts += found
    return texts


def _corpus_sample(dataset: str, count: int, seed: int) -> list[str]:
    from flows.dataset_root import DatasetRoot
    from pipelines import stages
    from pipelines.core.contract import StageNotFinished, data_urls, finished
    from pipelines.filters.quality_examples import sample_texts

    root = DatasetRoot(dataset)
    try:
        urls = data_urls(finished(root.root, stages.CORPUS))
    except StageNotFinished:
        raise UserError(f"--negative-from {dataset}: no finished corpus there (its "
                        f"{stages.CORPUS} stage); build the dataset first") from None
    texts = sample_texts(urls, count, seed)
    if not texts:
        raise UserError(f"--negative-from {dataset}: its corpus holds no documents")
    return texts


def cmd_train(args) -> int:
    if not 0 < args.holdout < 1:
        raise UserError(f"--holdout must be within 0..1 (a share), got {args.holdout:g}")
    if not args.negative and not args.negative_from:
        raise UserError("no negatives: give --negative FILE... or --negative-from DATASET")
    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        raise UserError(f"--out {args.out} is a folder: give the model file's name, e.g. "
                        f"{os.path.join(args.out, 'quality.bin')}")
    try:
        positives = _texts(args.positive, args.text_field, "--positive")
        negatives = _texts(args.negative or [], args.text_field, "--negative")
        if args.negative_from:
            count = args.negative_count or len(positives)
            negatives += _corpus_sample(args.negative_from, count, args.seed)
        report = train_classifier(positives, negatives, out, holdout=args.holdout,
                                  epochs=args.epochs, dim=args.dim, ngrams=args.ngrams,
                                  buckets=args.buckets, lr=args.lr, seed=args.seed)
    except TrainingError as err:
        raise UserError(str(err)) from None
    print(f"quality-model: trained on {report.train_positives:,} positives "
          f"({QUALITY_LABEL}) and {report.train_negatives:,} negatives ({NEGATIVE_LABEL}); "
          f"held out {report.heldout_positives:,} + {report.heldout_negatives:,} "
          f"({args.holdout:.0%} by text hash)")
    print(f"held out: precision {report.precision:.3f}, recall {report.recall:.3f} (a score "
          f">= {THRESHOLD} counted positive), ROC AUC {report.auc:.3f}")
    print(f"model: {out} ({os.path.getsize(out) / 1e6:,.1f} MB)")
    print(f"use it: corpus build ... --quality-model NAME={out} --quality-keep 'NAME>=0.5' "
          f"(or NAME:top=10%)")
    return 0


def register(sub, common) -> None:
    """`quality-model train`."""
    group = sub.add_parser("quality-model", help="train a fastText quality classifier for the "
                           "filter stage's quality scores (--quality-model)")
    commands = group.add_subparsers(dest="quality_command", required=True,
                                    parser_class=OneLineParser)
    train = commands.add_parser(
        "train", help="train a classifier of good texts against others",
        description=f"Train a fastText classifier of --positive texts (label {QUALITY_LABEL}) "
        f"against negatives ({NEGATIVE_LABEL}): --negative files, and/or a sample of a built "
        "dataset's corpus (--negative-from). A file of texts is JSON Lines or Parquet (the "
        "--text-field field), or plain text with a blank line between two texts. Texts are "
        "folded, one line each (NFKC, lower case, white space as single spaces), as the filter "
        "stage scores them. A share held out by text hash measures the model: precision and "
        f"recall at score {THRESHOLD}, and ROC AUC. Training is deterministic (one thread, "
        "--seed).")
    train.add_argument("--positive", nargs="+", required=True, metavar="PATH",
                       help="files of good texts")
    train.add_argument("--negative", nargs="+", metavar="PATH", help="files of other texts")
    train.add_argument("--negative-from", metavar="DATASET",
                       help="also (or only) negatives from this dataset's corpus (shard "
                       "stage): the documents of smallest seeded hash of their id")
    train.add_argument("--negative-count", type=positive_int, metavar="N",
                       help="documents taken from --negative-from (default: as many as the "
                       "positives)")
    train.add_argument("--text-field", default="text", metavar="FIELD",
                       help="the JSON Lines / Parquet field holding the text (default "
                       "%(default)s)")
    train.add_argument("--out", required=True, metavar="FILE.bin",
                       help="where the model goes (replaced if it exists)")
    train.add_argument("--holdout", type=number(above=0), default=0.1, metavar="F",
                       help="share of the texts held out to measure the model, chosen by text "
                       "hash (default %(default)s)")
    train.add_argument("--epochs", type=positive_int, default=EPOCHS, metavar="N",
                       help="passes over the examples (default %(default)s)")
    train.add_argument("--dim", type=positive_int, default=DIM, metavar="N",
                       help="embedding size (default %(default)s)")
    train.add_argument("--ngrams", type=positive_int, default=NGRAMS, metavar="N",
                       help="word n-grams, 2 = words and word pairs (default %(default)s)")
    train.add_argument("--buckets", type=positive_int, default=BUCKETS, metavar="N",
                       help="hash buckets of the word n-grams; the file is about "
                       "(words + buckets) x dim x 4 bytes (default %(default)s)")
    train.add_argument("--lr", type=number(above=0), default=LEARNING_RATE, metavar="X",
                       help="learning rate (default %(default)s)")
    train.add_argument("--seed", type=whole_number(0), default=0, metavar="N",
                       help="training seed, and the --negative-from sample's (default "
                       "%(default)s)")
    train.set_defaults(func=cmd_train)
