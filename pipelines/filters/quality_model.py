"""Quality classifiers: fastText models that score how much a document reads like the
high-quality examples they were trained on (DCLM's quality filter: a classifier of good text
against random crawl, applied as a score, then a threshold or a top share).

One text normalisation, `model_text`, is used for training and for scoring, so a model sees at
scoring time what it saw when it learned: the dedup stage's normalisation (`pipelines.dedup.
minhash.normalize`: NFKC, case folded, every run of white space, line breaks included, one
space), which also makes the text the single line fastText reads.

`train_classifier` trains a supervised fastText model on positives (`__label__hq`) against
negatives (`__label__lq`), deterministically (one thread, a fixed seed, the examples in the
order of their hash), and reports precision, recall and ROC AUC on a held-out part chosen by
the hash of each text. `QualityModel` loads any fastText classifier (ours, DCLM's) and scores
batches of texts: the probability of its positive label.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from pipelines.dedup.minhash import normalize
from schemas.config import QUALITY_LABEL

NEGATIVE_LABEL = "__label__lq"
MIN_EXAMPLES = 10  # of each class, at least: fewer cannot be split into training and held out
THRESHOLD = 0.5  # precision and recall count a score from this as positive

# Training defaults. Word bigrams as DCLM's classifier (word order says more than the words);
# 10 epochs over small example sets; 64 dimensions and 200,000 hash buckets keep the file about
# 50 MB (fastText's own 2,000,000 buckets x 100 dimensions: 800 MB) with no loss measured on the
# extraction pages (README, Quality scores).
EPOCHS, DIM, NGRAMS, BUCKETS, LEARNING_RATE = 10, 64, 2, 200_000, 0.1


class QualityModelError(ValueError):
    """A model file that cannot be used as asked: one line for the user."""


class TrainingError(ValueError):
    """Examples a classifier cannot be trained on (too few, one class missing): one line."""


def model_text(text: str | None) -> str:
    """The one line a quality model reads: folded, white space collapsed (module docstring)."""
    return normalize(text or "")


def text_hash(line: str) -> int:
    """64 bits of the sha256 of a normalised text: its split and its place in training."""
    return int.from_bytes(hashlib.sha256(line.encode("utf-8", "surrogatepass")).digest()[:8],
                          "big")


def held_out(line: str, share: float) -> bool:
    """Whether a normalised text is in the held-out part: the same answer on every machine."""
    return text_hash(line) < share * 2**64


FASTTEXT_MAGIC, FASTTEXT_VERSIONS = 793712314, (11, 12)


def check_model_file(path: str) -> None:
    """A `QualityModelError` unless `path` looks like a whole fastText classifier file: its
    header (magic number, version, dimension, labels) and, at its very end, the output matrix
    that header implies (labels x dimension). fastText itself reads a truncated file without a
    word (scoring garbage), or loops on one whose header is cut off."""
    import struct

    if not os.path.isfile(path):
        raise QualityModelError(f"no such model file: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(76)
        if len(head) < 76 or struct.unpack("<i", head[:4])[0] != FASTTEXT_MAGIC:
            raise QualityModelError(f"{path} is not a fastText model (no fastText header)")
        version, dim = struct.unpack("<ii", head[4:12])
        n_entries, n_words, n_labels = struct.unpack("<iii", head[64:76])
        if version not in FASTTEXT_VERSIONS or not 0 < dim <= 1 << 16:
            raise QualityModelError(f"{path}: a fastText header of an unknown version "
                                    f"({version}) or dimension ({dim})")
        if n_labels < 1 or n_words < 0 or n_entries != n_words + n_labels:
            raise QualityModelError(f"{path} is not a fastText classifier (no labels)")
        tail = 16 + 4 * n_labels * dim
        if size < 76 + tail + 1:
            raise QualityModelError(f"{path} is truncated ({size:,} bytes)")
        f.seek(size - tail - 1)
        quantized, rows, cols = struct.unpack("<?qq", f.read(17))
    if quantized or (rows, cols) != (n_labels, dim):
        raise QualityModelError(
            f"{path} is truncated or damaged: it does not end with the {n_labels} x {dim} "
            f"output matrix its header announces (a model quantized with qout cannot be "
            f"checked: use its .bin)")


class QualityModel:
    """A fastText classifier file: `scores(texts)` -> the probability of `positive` for each.

    Loading fails with one line (`QualityModelError`) for a missing file, a file that is no
    fastText model, a model that is no classifier, and a positive label the model lacks (the
    message lists the labels it has)."""

    def __init__(self, path: str, positive: str = QUALITY_LABEL):
        import fasttext

        check_model_file(path)
        try:
            self.model = fasttext.load_model(path)
        except (ValueError, RuntimeError, MemoryError) as err:
            raise QualityModelError(f"{path} is not a fastText model ({err})") from None
        self.path, self.positive = path, positive
        self.labels = tuple(self.model.get_labels())
        if not self.labels or not all(label.startswith("__label__") for label in self.labels):
            raise QualityModelError(f"{path} is a fastText word-vector model, not a classifier")
        if positive not in self.labels:
            shown = ", ".join(self.labels[:12])
            if len(self.labels) > 12:
                shown += f", ... ({len(self.labels)} in all)"
            raise QualityModelError(f"{path} has no label {positive}; its labels are {shown}: "
                                    f"name the positive one with --quality-label NAME=LABEL")

    def scores(self, texts: list[str]) -> list[float]:
        """The positive label's probability per text, in order (float32 values, as the
        `quality_scores` column stores them), from one `predict` call."""
        if not texts:
            return []
        # A list, never one string: fasttext 0.9.3 under numpy 2 raises on a single string.
        labels, probs = self.model.predict([model_text(t) for t in texts], k=-1)
        out = []
        for labs, ps in zip(labels, probs):
            p = next((float(q) for lab, q in zip(labs, ps) if lab == self.positive), 0.0)
            out.append(float(np.float32(min(1.0, max(0.0, p)))))
        return out


def roc_auc(scores, positive) -> float:
    """ROC AUC by ranks (Mann-Whitney U): the chance that a random positive scores above a
    random negative, ties counted half; nan without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based, ties get the mean of their ranks
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class TrainReport:
    """What `train_classifier` measured on the held-out examples (never trained on)."""

    model: str
    train_positives: int
    train_negatives: int
    heldout_positives: int
    heldout_negatives: int
    precision: float  # of the held-out texts scored >= THRESHOLD, the share that are positives
    recall: float  # of the held-out positives, the share scored >= THRESHOLD
    auc: float


def _examples(texts: Iterable[str]) -> set[str]:
    return {line for line in map(model_text, texts) if line}


def train_classifier(positives: Iterable[str], negatives: Iterable[str], out: str, *,
                     holdout: float = 0.1, epochs: int = EPOCHS, dim: int = DIM,
                     ngrams: int = NGRAMS, buckets: int = BUCKETS, lr: float = LEARNING_RATE,
                     seed: int = 0) -> TrainReport:
    """Train a classifier of `positives` (`__label__hq`) against `negatives` and save it to
    `out`; return its held-out measures.

    Texts are normalised (`model_text`); a text given twice counts once, and a negative that is
    also a positive is dropped. The held-out part is the `holdout` share chosen by text hash
    (`held_out`), so no text is both trained on and measured. Training is deterministic: one
    thread, `seed`, the examples in the order of their hash (positives and negatives mixed)."""
    pos = _examples(positives)
    neg = _examples(negatives) - pos
    for name, examples in (("positive", pos), ("negative", neg)):
        if len(examples) < MIN_EXAMPLES:
            raise TrainingError(f"too few {name} examples: {len(examples)} distinct non-empty "
                                f"texts, at least {MIN_EXAMPLES} needed")
    labelled = sorted([(text_hash(t), t, True) for t in pos] +
                      [(text_hash(t), t, False) for t in neg])
    train = [(t, y) for h, t, y in labelled if not h < holdout * 2**64]
    test = [(t, y) for h, t, y in labelled if h < holdout * 2**64]
    for part, rows in (("training", train), ("held-out", test)):
        if len({y for _, y in rows}) < 2:
            raise TrainingError(f"too few examples: the {part} part ({holdout:.0%} held out by "
                                f"text hash) lacks a class; give more texts of each")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="corpus-quality-") as tmp:
        path = os.path.join(tmp, "train.txt")
        with open(path, "w", encoding="utf-8") as f:
            for text, y in train:
                f.write(f"{QUALITY_LABEL if y else NEGATIVE_LABEL} {text}\n")
        _train_in_child(dict(input=path, output=out, epoch=epochs, dim=dim, wordNgrams=ngrams,
                             bucket=buckets, lr=lr, minCount=1, loss="softmax", thread=1,
                             seed=seed, verbose=0))
    scores = np.array(QualityModel(out).scores([t for t, _ in test]))
    truth = np.array([y for _, y in test])
    predicted = scores >= THRESHOLD
    hits = int((predicted & truth).sum())
    return TrainReport(
        model=out, train_positives=sum(y for _, y in train),
        train_negatives=sum(not y for _, y in train), heldout_positives=int(truth.sum()),
        heldout_negatives=int((~truth).sum()),
        precision=hits / int(predicted.sum()) if predicted.any() else 0.0,
        recall=hits / int(truth.sum()), auc=roc_auc(scores, truth))


# fastText 0.9.3 allocates its input matrix without zeroing it, and with one thread `uniform`
# fills only the first tenth: whatever that memory held decides the model (a second training in
# one process was seen to diverge, "Encountered NaN.", or to give another model). In a new
# process whose large allocations are always fresh pages (glibc's mmap threshold held fixed, not
# raised after a large free), the rest is zeros, every time: the same file from the same examples.
_TRAIN = """
import ctypes, json, sys
try:
    ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: 64 KiB, fixed
except (OSError, AttributeError):
    pass
import fasttext
args = json.loads(sys.argv[1])
out = args.pop("output")
try:
    fasttext.train_supervised(**args).save_model(out)
except (RuntimeError, ValueError) as err:
    sys.exit(f"fastText: {err}")
"""


def _train_in_child(args: dict) -> None:
    done = subprocess.run([sys.executable, "-c", _TRAIN, json.dumps(args)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        hint = "; a lower --lr helps when training diverges" if "NaN" in said else ""
        raise TrainingError(f"training failed ({said}){hint}")
