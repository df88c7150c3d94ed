"""MinHash signatures: the same everywhere, close to the true Jaccard, words or CJK characters."""

import subprocess
import sys

import numpy as np

from pipelines.dedup.minhash import (
    MinHasher,
    estimated_jaccard,
    exact_jaccard,
    normalize,
    shingle_hashes,
    tokens,
)
from tests.conftest import ROOT, shared


def test_normalize_folds_case_width_and_spaces():
    assert normalize("  Ｈello \n\t WORLD ") == "hello world"
    hashes, _ = MinHasher(14, 8, 1, 5, 256).sign(["STRASSE am Ende", "straße  am ende", "Ende"])
    assert hashes[0] == hashes[1] != hashes[2]


def test_tokens_are_words_or_single_cjk_and_thai_characters():
    assert tokens("Hello, World_wide 42!") == ["hello", "world", "wide", "42"]
    assert tokens("数据去重，很重要") == ["数", "据", "去", "重", "很", "重", "要"]
    assert tokens("データ") == ["デ", "ー", "タ"]
    assert tokens("ภาษาไทย") == list("ภาษาไทย")


def test_signatures_are_the_same_in_another_process():
    text = " ".join(shared("langid", "de.txt").read_text(encoding="utf-8").splitlines()[:20])
    here = MinHasher(14, 8, 1, 5, 256).signatures([text])[0]
    code = ("import sys; from pipelines.dedup.minhash import MinHasher; "
            "sys.stdout.write(MinHasher(14, 8, 1, 5, 256).signatures([sys.stdin.read()])[0]"
            ".tobytes().hex())")
    there = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True,
                           text=True, cwd=ROOT, check=True, env={"PYTHONHASHSEED": "123"})
    assert here.tobytes().hex() == there.stdout
    other_seed = MinHasher(14, 8, 2, 5, 256).signatures([text])[0]
    assert (here == other_seed).mean() < 0.1


def test_batches_give_the_same_signatures_as_one_by_one():
    lines = shared("langid", "fr.txt").read_text(encoding="utf-8").splitlines()
    texts = [" ".join(lines[i:i + 30]) for i in range(0, 400, 13)] + ["", "court"]
    hasher = MinHasher(14, 8, 1, 5, 256)
    batch = hasher.signatures(texts)
    single = np.stack([hasher.signatures([t])[0] for t in texts])
    assert np.array_equal(batch, single)
    assert hasher.band_keys(batch).shape == (len(texts), 14)


def test_estimate_follows_the_exact_jaccard_for_words_and_for_chinese():
    hasher = MinHasher(14, 8, 1, 5, 256)
    for lang in ("en", "zh"):
        lines = shared("langid", f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        base = lines[:40]
        for keep in (40, 36, 30, 20):
            other = base[:keep] + lines[100:100 + 40 - keep]
            a, b = " ".join(base), " ".join(other)
            exact = exact_jaccard(shingle_hashes(a, 5), shingle_hashes(b, 5))
            est = float(estimated_jaccard(*hasher.signatures([a, b])))
            assert abs(est - exact) < 0.1, (lang, keep, est, exact)
    # Chinese is cut into characters: a one-character edit leaves most shingles shared
    zh = "".join(shared("langid", "zh.txt").read_text(encoding="utf-8").splitlines()[:10])
    edited = zh[:50] + "变" + zh[51:]
    assert exact_jaccard(shingle_hashes(zh, 5), shingle_hashes(edited, 5)) > 0.9


def test_table_tokenizer_cuts_where_the_regular_expression_does_in_every_language():
    """`_token_hashes` finds tokens by table lookups; `TOKEN` is the same rule as a regular
    expression. Each regex token hashed on its own must equal the fast path's hash at its place."""
    from pipelines.dedup.minhash import TOKEN, _token_hashes, fold

    alone: dict[str, int] = {}  # a token's hash on its own (161,000 tokens, 29,000 distinct)
    checked = 0
    for path in sorted(shared("langid").glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines()[:40]:
            for text in (line, f"a中b {line} Ｈello_x 12ab ภาษา ２０２４"):
                folded = fold(text)
                expected = [alone.get(t) or alone.setdefault(t, int(_token_hashes(t)[0]))
                            for t in TOKEN.findall(folded)]
                assert _token_hashes(folded).tolist() == expected, (path.name, text[:60])
                checked += 1
    assert checked > 5000


def test_signatures_from_many_threads_match_one_thread(monkeypatch):
    """Beam's multi_threading mode signs in several threads at once; the shared power tables
    grow while others read them (a torn update once gave an IndexError)."""
    import threading

    import pipelines.dedup.minhash as minhash

    lines = shared("langid", "ru.txt").read_text(encoding="utf-8").splitlines()
    texts = [" ".join(lines[:n]) for n in range(1, 400, 7)]
    expected = MinHasher(14, 8, 1, 5, 256).signatures(texts)
    errors, results = [], {}

    def work(k):
        try:
            results[k] = MinHasher(14, 8, 1, 5, 256).signatures(texts[k % 3::1])
        except Exception as err:  # noqa: BLE001 - the test reports any failure
            errors.append(err)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        for _ in range(5):
            monkeypatch.setattr(minhash, "_POWERS", (np.ones(1, np.uint64),
                                                     np.ones(1, np.uint64)))
            threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors
            for k, sigs in results.items():
                assert np.array_equal(sigs, expected[k % 3:])
    finally:
        sys.setswitchinterval(interval)
