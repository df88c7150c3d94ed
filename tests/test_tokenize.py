"""The tokenize stage at scale: sample-trained or supplied tokenizers, a split and a shuffle that
are functions of the id, shards written as streams under a memory limit, identical bytes whatever
the workers or the limit."""

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from pipelines.core.contract import StageDir
from pipelines.tokens import stage as tokenize
from pipelines.tokens.tokenizer import TokenizerError, load_tokenizer, train_tokenizer
from schemas.config import EngineConfig, TokenizeConfig
from schemas.tokens import EOT_TOKEN
from tests.conftest import shared

IN_MEMORY = EngineConfig(workers=1, running_mode="in_memory")
QUOTE = f"A page that quotes the separator {EOT_TOKEN} in its text, then goes on."


def corpus_docs() -> list[dict]:
    """Real text in 75 languages (ten sentences a document) and Shakespeare, plus one document
    quoting the end-of-text token and one with no text."""
    docs = []
    for path in sorted(shared("langid").glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()[:60]
        for i in range(0, len(lines), 10):
            docs.append({"id": f"{path.stem}-{i}", "url": f"https://{path.stem}.example/{i}",
                         "text": "\n".join(lines[i:i + 10])})
    play = shared("text", "tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    for i in range(0, len(play), 2000):
        docs.append({"id": f"play-{i}", "url": f"https://play.example/{i}",
                     "text": play[i:i + 2000]})
    docs.append({"id": "quote", "url": "https://quote.example/", "text": QUOTE})
    docs.append({"id": "empty", "url": "https://empty.example/", "text": ""})
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The documents in three Parquet files, as the shard stage would leave them."""
    folder = tmp_path_factory.mktemp("corpus")
    docs = corpus_docs()
    urls = []
    for n in range(3):
        part = docs[n::3]
        path = folder / f"corpus-{n:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(part), path, row_group_size=50)
        urls.append(str(path))
    return urls, docs


def pack(root, urls, engine=IN_MEMORY, seed=7, **settings):
    """Run the stage's job into `root`/tokenize; return (info, counters, folder)."""
    config = TokenizeConfig(**{"vocab_size": 1200, "shard_tokens": 40_000, **settings})
    stage = StageDir(str(root), "tokenize")
    stage.reset()
    counters, source = tokenize.build_tokenize(stage, urls, config, seed, engine,
                                               log=lambda _: None)
    info = tokenize.token_info(stage, "-", config, seed, source)
    return info, counters, root / "tokenize"


def documents_of(folder, info):
    """{split: [token arrays of each document, in file order]}."""
    out = {}
    for split, shards in info.splits.items():
        out[split] = []
        for shard in shards:
            ids = np.fromfile(folder / shard.bin, dtype=np.dtype(info.dtype).newbyteorder("<"))
            ends = np.fromfile(folder / shard.idx, dtype="<u8")
            assert len(ids) == shard.tokens == (ends[-1] if len(ends) else 0)
            assert shard.documents == len(ends)
            starts = np.r_[0, ends[:-1]].astype(np.int64)
            out[split] += [ids[a:b] for a, b in zip(starts, ends.astype(np.int64))]
    return out


def shard_bytes(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((folder / "data").glob("*.*"))}


@pytest.fixture(scope="module")
def packed(corpus, tmp_path_factory):
    urls, _ = corpus
    root = tmp_path_factory.mktemp("packed")
    return pack(root, urls)


def test_every_document_round_trips_and_counts_match(corpus, packed):
    _, docs = corpus
    info, counters, folder = packed
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    by_split = documents_of(folder, info)
    decoded = []
    for split, arrays in by_split.items():
        for ids in arrays:
            assert ids[-1] == info.eot_id and (ids[:-1] != info.eot_id).all()
            decoded.append(tok.decode(ids[:-1].tolist(), skip_special_tokens=False))
    kept = [d["text"] for d in docs if d["text"]]
    assert sorted(decoded) == sorted(kept)  # every script, byte for byte
    assert QUOTE in decoded  # the quoted separator was encoded as text
    assert counters["tokenize/records_in"] == len(docs)
    for split in ("train", "val"):
        assert info.documents(split) == counters[f"tokenize/documents_{split}"] \
            == len(by_split[split])
        assert info.tokens(split) == counters[f"tokenize/tokens_{split}"]
    assert len(info.splits["train"]) >= 3  # shard_tokens=40,000: several shards
    rejected = pq.read_table(folder / "rejected").to_pylist()
    assert [(r["id"], r["reason"]) for r in rejected] == [("empty", "no_tokens")]
    assert not (folder / "work").exists()


def test_split_and_shuffle_are_functions_of_id_and_seed(corpus, packed):
    _, docs = corpus
    info, _, folder = packed
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    id_of = {d["text"]: d["id"] for d in docs}
    seen = set()
    for split, shards in info.splits.items():
        previous_last = -1
        order = []
        for shard in shards:
            ids = np.fromfile(folder / shard.bin, dtype="<u2")
            ends = np.fromfile(folder / shard.idx, dtype="<u8").astype(np.int64)
            keys = []
            for a, b in zip(np.r_[0, ends[:-1]], ends):
                doc_id = id_of[tok.decode(ids[a:b - 1].tolist(), skip_special_tokens=False)]
                assert tokenize.document_split(doc_id, 7, info.val_fraction) == split
                assert doc_id not in seen  # the splits are disjoint
                seen.add(doc_id)
                k = tokenize.DocumentKeys(doc_id, 7)
                keys.append((k.k1, k.k2))
                order.append(doc_id)
            assert keys == sorted(keys) and keys[0][0] > previous_last  # one global order
            previous_last = keys[-1][0]
        assert order != sorted(order)  # shuffled, not in id order
    assert 0.04 < info.documents("val") / (info.documents("train") + info.documents("val")) < 0.2
    val_8 = [d["id"] for d in docs if tokenize.document_split(d["id"], 8, 0.1) == "val"]
    val_7 = [d["id"] for d in docs if tokenize.document_split(d["id"], 7, 0.1) == "val"]
    assert val_8 != val_7  # another seed, another split


def test_two_workers_and_a_small_memory_limit_give_the_same_bytes(corpus, packed, tmp_path):
    """The corpus is ~60 times the limit: workers spill many small runs, and no worker holds
    more than the limit plus one document; the shards are the same bytes."""
    urls, _ = corpus
    info, counters, folder = packed
    limit = 16_000
    small, small_counters, small_folder = pack(
        tmp_path, urls, EngineConfig(workers=2, running_mode="multi_processing"),
        memory_limit=limit, batch_documents=7)
    assert shard_bytes(small_folder) == shard_bytes(folder)
    assert (small_folder / "tokenizer.json").read_bytes() == (folder / "tokenizer.json") \
        .read_bytes()
    total = (info.tokens("train") + info.tokens("val")) * 2
    assert total > 50 * limit
    biggest_doc = 2 * max(len(a) for s in documents_of(folder, info).values() for a in s)
    assert small_counters["tokenize/bytes_held_max"] <= limit + biggest_doc
    assert small_counters["tokenize/runs_written"] > 10 * counters["tokenize/runs_written"]


def test_the_tokenizer_sample_is_seeded_by_id_and_bounded(corpus, tmp_path):
    urls, docs = corpus
    info, _, folder = pack(tmp_path / "a", urls, sample_documents=40)
    sample = info.tokenizer_source["sample"]
    assert 30 <= sample["documents"] <= 40
    again, _, folder2 = pack(tmp_path / "b", urls, sample_documents=40)
    assert (folder / "tokenizer.json").read_bytes() == (folder2 / "tokenizer.json").read_bytes()
    by_bytes, _, _ = pack(tmp_path / "c", urls, sample_bytes=50_000)
    assert 40_000 <= by_bytes.tokenizer_source["sample"]["bytes"] <= 50_000
    assert by_bytes.tokenizer_sha256 != info.tokenizer_sha256


def test_sample_cut_meets_both_limits():
    hist = np.zeros((2, tokenize.SAMPLE_BINS), dtype=np.int64)
    hist[0, :10] = 1
    hist[1, :10] = 100
    assert tokenize.sample_cut(hist, 0, 0) == tokenize.SAMPLE_BINS
    assert tokenize.sample_cut(hist, 4, 0) == 4
    assert tokenize.sample_cut(hist, 4, 250) == 2
    assert tokenize.sample_cut(hist, 0, 50) == 1  # never an empty sample


def test_bpe_training_does_not_depend_on_text_order():
    texts = [line for line in shared("langid", "de.txt").read_text(encoding="utf-8")
             .splitlines()[:300]]
    a = train_tokenizer(texts, 600, 2)
    b = train_tokenizer(list(reversed(texts)), 600, 2)
    assert a.to_str() == b.to_str()


def test_a_supplied_tokenizer_json_is_used_byte_for_byte(corpus, packed, tmp_path):
    urls, _ = corpus
    info, _, _ = packed
    trained = train_tokenizer([d["text"] for d in corpus_docs()[::4]], 900, 2)
    path = tmp_path / "mine.json"
    trained.save(str(path), pretty=True)
    first, _, folder = pack(tmp_path / "a", urls[:2], tokenizer=str(path))
    second, _, _ = pack(tmp_path / "b", urls[2:], tokenizer=str(path))
    assert (folder / "tokenizer.json").read_bytes() == path.read_bytes()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.tokenizer_sha256 == second.tokenizer_sha256 == digest  # same tokenizer, said so
    assert info.tokenizer_sha256 != digest
    assert first.tokenizer_source["kind"] == "supplied" and not first.tokenizer_source["changed"]
    assert first.tokenizer_source["files"][0]["sha256"] == digest
    assert first.vocab_size == 900
    arrays = documents_of(folder, first)
    docs = pq.read_table(urls[0]).to_pylist() + pq.read_table(urls[1]).to_pylist()
    expected = sorted(tuple(trained.encode(d["text"]).ids) for d in docs
                      if d["text"] and EOT_TOKEN not in d["text"])
    got = sorted(tuple(a[:-1].tolist()) for s in arrays.values() for a in s)
    assert set(expected) <= set(got)


def test_a_gpt2_style_vocab_and_merges_pair(corpus, tmp_path):
    urls, _ = corpus
    trained = train_tokenizer([d["text"] for d in corpus_docs()[::4]], 700, 2)
    folder = tmp_path / "gpt2"
    folder.mkdir()
    trained.model.save(str(folder))  # vocab.json + merges.txt, the end-of-text token a plain entry
    assert sorted(p.name for p in folder.iterdir()) == ["merges.txt", "vocab.json"]
    loaded = load_tokenizer(str(folder / "vocab.json"))
    assert loaded.source["changed"] and len(loaded.source["files"]) == 2
    text = "Hamlet: to be, or not to be"
    assert loaded.tokenizer.encode(text).ids == trained.encode(text).ids
    info, _, out = pack(tmp_path / "ds", urls[:1], tokenizer=str(folder))
    assert info.eot_id == trained.token_to_id(EOT_TOKEN)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    for ids in documents_of(out, info)["train"][:20]:
        assert tok.encode(tok.decode(ids[:-1].tolist())).ids == ids[:-1].tolist()


def test_a_vocabulary_above_65536_switches_to_uint32(corpus, tmp_path):
    urls, docs = corpus
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {f"<filler{i}>": i for i in range(70_000)}
    vocab.update({ch: 70_000 + i for i, ch in enumerate(sorted(alphabet))})
    vocab[EOT_TOKEN] = len(vocab)
    big = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    big.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    big.decoder = decoders.ByteLevel()
    big.add_special_tokens([EOT_TOKEN])
    path = tmp_path / "big.json"
    big.save(str(path))
    info, _, folder = pack(tmp_path / "ds", urls[:1], tokenizer=str(path))
    assert info.dtype == "uint32" and info.vocab_size > 65_536
    ids = np.fromfile(folder / info.splits["train"][0].bin, dtype="<u4")
    assert ids.max() > 65_535
    first = documents_of(folder, info)["train"][0]
    assert big.decode(first[:-1].tolist()) in {d["text"] for d in docs}


def test_supplied_tokenizer_errors_are_clear(tmp_path):
    with pytest.raises(TokenizerError, match="no such file"):
        load_tokenizer(str(tmp_path / "absent.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="neither tokenizer.json nor vocab.json"):
        load_tokenizer(str(tmp_path / "empty"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a Hugging Face tokenizer.json"):
        load_tokenizer(str(tmp_path / "bad.json"))
    plain = train_tokenizer(["some words here"] * 5, 300, 1, eot_token="</s>")
    plain.save(str(tmp_path / "s.json"))
    with pytest.raises(TokenizerError, match="--eot-token.*</s>"):
        load_tokenizer(str(tmp_path / "s.json"))
    assert load_tokenizer(str(tmp_path / "s.json"), eot_token="</s>").tokenizer \
        .token_to_id("</s>") == 0
    with pytest.raises(TokenizerError, match="never downloaded"):
        load_tokenizer("https://example.invalid/tokenizer.json")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.json").write_text(json.dumps({"a": 0}))
    with pytest.raises(TokenizerError, match="merges.txt"):
        load_tokenizer(str(tmp_path / "v"))


def test_a_shard_is_whole_or_absent(tmp_path):
    """Runs merge into a temporary file renamed at the end: a broken run leaves no shard, and a
    retried shard whose runs are gone finds the finished one."""
    from pipelines.tokens.pack import RunBuffer, write_shard

    dtype = np.dtype("<u2")
    rng = np.random.default_rng(0)
    buffer = RunBuffer(str(tmp_path / "runs"), limit=1000)
    runs = []
    for i in range(60):
        tokens = rng.integers(1, 1000, size=int(rng.integers(5, 80)), dtype=np.uint16)
        runs += buffer.add(("train", 0), (int(rng.integers(2**63)), i, 0), tokens)
    runs += buffer.flush()
    pieces = [(r[1][0], r[1][1]) for r in runs]
    assert len(pieces) > 3
    data = tmp_path / "data"
    data.mkdir()
    bin_url, idx_url = str(data / "train-00000.bin"), str(data / "train-00000.idx")
    broken = pieces[1][0]
    whole = open(broken, "rb").read()
    open(broken, "wb").write(whole[:-3])
    with pytest.raises(IOError, match="ends early"):
        write_shard(pieces, bin_url, idx_url, dtype, 1 << 16)
    assert not (data / "train-00000.bin").exists() and not (data / "train-00000.idx").exists()
    open(broken, "wb").write(whole)
    docs, tokens = write_shard(pieces, bin_url, idx_url, dtype, 1 << 16)
    assert docs == 60 and tokens * 2 == (data / "train-00000.bin").stat().st_size
    assert not any(p.suffix in (".tok", ".npz") for p in (tmp_path / "runs").rglob("*"))
    assert write_shard(pieces, bin_url, idx_url, dtype, 1 << 16) == (docs, tokens)
