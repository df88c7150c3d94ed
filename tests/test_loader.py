"""The token loader: sample order, gathering, rank split, exact resume; real shard files."""

import json

import numpy as np
import pytest
import torch

from schemas.tokens import TokenShard, TokenShardsInfo, shard_file_names
from trainer.data import TokenLoader, TokenShards
from trainer.sampler import FeistelPermutation, SampleOrder, rank_positions

BLOCK = 16


def write_shards(folder, splits: dict[str, list[np.ndarray]], dtype: str = "uint16",
                 vocab: int = 1000):
    """A token folder with the given ids per shard, in the layout of schemas/tokens.py."""
    (folder / "data").mkdir(parents=True)
    info_splits = {}
    for split, shards in splits.items():
        info_splits[split] = []
        for i, ids in enumerate(shards):
            bin_name, idx_name = shard_file_names(split, i)
            (folder / "data" / bin_name).write_bytes(ids.astype(np.dtype(dtype).newbyteorder("<"))
                                                     .tobytes())
            (folder / "data" / idx_name).write_bytes(np.array([len(ids)], dtype="<u8").tobytes())
            info_splits[split].append(TokenShard(f"data/{bin_name}", f"data/{idx_name}",
                                                 len(ids), 1, "-", "-"))
    info = TokenShardsInfo(dtype, vocab, 0, "tokenizer.json", "-", "-", 0.1, info_splits)
    (folder / "manifest.json").write_text(json.dumps({"tokens": info.to_dict()}))
    return folder


def naive_windows(folder, split: str, n_shards: int, dtype: str = "<u2") -> list[np.ndarray]:
    """Every window of block+1 tokens at stride block, read straight from the files."""
    windows = []
    for i in range(n_shards):
        raw = np.fromfile(folder / "data" / shard_file_names(split, i)[0], dtype=dtype)
        windows += [raw[k * BLOCK:k * BLOCK + BLOCK + 1] for k in range((len(raw) - 1) // BLOCK)]
    return windows


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three train shards of uneven length (one too short for a window) and one val shard."""
    rng = np.random.default_rng(0)
    lengths = [1001, 10, 530]
    return write_shards(tmp_path_factory.mktemp("shards"), {
        "train": [rng.integers(0, 1000, n) for n in lengths],
        "val": [rng.integers(0, 1000, 300)],
    })


@pytest.fixture(scope="module")
def data(folder):
    return TokenShards(str(folder))


def drain(loader, steps):
    return [loader.next_batch() for _ in range(steps)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 100, 1000, 4097, 65_536 + 5])
def test_the_permutation_is_a_bijection(n):
    for key in (0, 1, 2**63 + 11):
        out = FeistelPermutation(n, key)(np.arange(n))
        assert out.dtype == np.int64
        assert np.array_equal(np.sort(out), np.arange(n))


def test_the_order_depends_on_seed_and_epoch_only():
    s = 1000
    epoch0 = SampleOrder(s, seed=7).samples(np.arange(s))
    assert np.array_equal(epoch0, SampleOrder(s, seed=7).samples(np.arange(s)))
    assert not np.array_equal(epoch0, np.arange(s))  # shuffled
    assert not np.array_equal(epoch0, SampleOrder(s, seed=8).samples(np.arange(s)))
    epoch1 = SampleOrder(s, seed=7).samples(np.arange(s, 2 * s))
    assert np.array_equal(np.sort(epoch1), np.arange(s)) and not np.array_equal(epoch0, epoch1)
    # a position's sample does not depend on what was asked before or alongside it
    assert SampleOrder(s, 7).samples([1234])[0] == epoch1[234]


def test_gathered_windows_equal_slices_of_the_raw_files(folder, data):
    expected = naive_windows(folder, "train", 3)
    assert data.num_samples("train", BLOCK) == len(expected) == 1000 // 16 + 0 + 529 // 16
    ids = np.random.default_rng(1).permutation(len(expected))
    got = data.gather("train", ids, BLOCK)
    assert got.dtype == np.int64 and got.shape == (len(ids), BLOCK + 1)
    for row, i in zip(got, ids):
        assert np.array_equal(row, expected[i])
    loader = TokenLoader(data, "train", 8, BLOCK, seed=3, prefetch=False)
    x, y = loader.next_batch()
    order = SampleOrder(len(expected), 3).samples(np.arange(8))
    assert x.dtype == torch.int64 and x.shape == (8, BLOCK)
    windows = torch.from_numpy(np.stack([expected[i] for i in order]).astype(np.int64))
    assert torch.equal(x, windows[:, :-1]) and torch.equal(y, windows[:, 1:])


def test_ranks_split_the_global_batch_without_overlap(data):
    world, batch = 3, 4
    s = data.num_samples("train", BLOCK)
    ranks = [TokenLoader(data, "train", batch, BLOCK, seed=5, rank=r, world_size=world,
                         prefetch=False) for r in range(world)]
    whole = TokenLoader(data, "train", batch * world, BLOCK, seed=5, prefetch=False)
    seen = []
    for _ in range(s // (batch * world)):  # every full step of epoch 0
        parts = [r.next_batch()[0] for r in ranks]
        assert torch.equal(torch.cat(parts), whole.next_batch()[0])
        seen += [tuple(row.tolist()) for part in parts for row in part]
    assert len(seen) == len(set(seen)) == s - s % (batch * world)
    assert list(rank_positions(100, 4, 2, 3)) == [108, 109, 110, 111]


def test_a_restored_loader_continues_exactly(data):
    s = data.num_samples("train", BLOCK)  # 95 samples, batch 8: epoch 1 starts inside step 11
    straight = TokenLoader(data, "train", 8, BLOCK, seed=11)
    drain(straight, 10)
    state = straight.state_dict()
    assert state == {"samples_consumed": 80}
    expected = drain(straight, 6)  # crosses the epoch boundary at 95
    assert straight.epoch == 1 and straight.samples_consumed == 128 > s
    restored = TokenLoader(data, "train", 8, BLOCK, seed=11)
    restored.load_state_dict(state)
    for (x, y), (ex, ey) in zip(drain(restored, 6), expected):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    # the same state on 2 ranks x 4: their concatenation is the same continuation
    halves = [TokenLoader(data, "train", 4, BLOCK, seed=11, rank=r, world_size=2)
              for r in range(2)]
    for h in halves:
        h.load_state_dict(state)
    for ex, _ in expected:
        assert torch.equal(torch.cat([h.next_batch()[0] for h in halves]), ex)
    assert halves[0].state_dict() == straight.state_dict()


def test_prefetch_changes_nothing(data):
    ahead = TokenLoader(data, "train", 8, BLOCK, seed=2, prefetch=True)
    plain = TokenLoader(data, "train", 8, BLOCK, seed=2, prefetch=False)
    for _ in range(15):
        assert all(torch.equal(a, b) for a, b in zip(ahead.next_batch(), plain.next_batch()))
    ahead.load_state_dict({"samples_consumed": 3})  # the prefetched batch is for position 120
    plain.load_state_dict({"samples_consumed": 3})
    for _ in range(3):
        assert all(torch.equal(a, b) for a, b in zip(ahead.next_batch(), plain.next_batch()))
    assert torch.equal(plain.batch_at(3)[0], TokenLoader(data, "train", 8, BLOCK, 2).batch_at(3)[0])
    ahead.close()


def test_uint32_shards_are_read_with_the_manifest_dtype(tmp_path):
    ids = np.random.default_rng(4).integers(0, 200_000, 400)
    assert ids.max() > 2**16
    write_shards(tmp_path, {"train": [ids]}, dtype="uint32", vocab=200_000)
    data = TokenShards(str(tmp_path))
    expected = naive_windows(tmp_path, "train", 1, dtype="<u4")
    got = data.gather("train", np.arange(len(expected)), BLOCK)
    assert np.array_equal(got, np.stack(expected)) and got.max() > 2**16


def test_a_truncated_shard_is_named_and_a_short_split_refused(tmp_path):
    write_shards(tmp_path, {"train": [np.arange(100), np.arange(200)], "val": [np.arange(5)]})
    with pytest.raises(ValueError, match="no shard longer than block_size"):
        TokenLoader(TokenShards(str(tmp_path)), "val", 2, BLOCK, seed=0)
    broken = tmp_path / "data" / "train-00001.bin"
    broken.write_bytes(broken.read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated") as err:
        TokenShards(str(tmp_path))
    assert str(broken) in str(err.value)
