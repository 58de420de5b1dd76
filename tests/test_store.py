"""The window store: atomic shards, memory-mapped random access across shards, dataset, merge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.pairs.store_merge import merge_stores
from crossmodal_har.pairs.store import (PairedWindowDataset, ShardData, ShardedArray, WindowStore,
                                        write_shard)
from crossmodal_har.pairs.store_file import write_store_json


def _shard(n, offset, k=4, j=1, mode="frames", session="s", labels=None):
    imu = (offset + np.arange(n * 10 * 6, dtype=np.float32)).reshape(n, 10, 6)
    if mode == "frames":
        video = np.zeros((n, k * j, 8, 8, 3), np.uint8)
        for i in range(n):
            video[i] = np.arange(k * j, dtype=np.uint8)[:, None, None, None] + (10 * (offset + i)) % 200
    else:
        video = (offset + np.arange(n * 5, dtype=np.float16)).reshape(n, 5)
    times = np.tile(np.arange(k * j, dtype=np.float64), (n, 1))
    man = pd.DataFrame({"session": session, "subject": session.upper(), "start_s": np.arange(n) * 1.0,
                        "end_s": np.arange(n) + 2.0, "label": labels or [""] * n, "flags": ""})
    return ShardData(imu=imu, video=video, frame_times=times, manifest=man)


def _store(path, sizes=(3, 1, 4), mode="frames", j=1, labels=None):
    shards, off = [], 0
    for c, n in enumerate(sizes):
        name = f"s{c}-0000"
        write_shard(path, name, _shard(n, off, j=j, mode=mode, session=f"s{c}", labels=labels and labels[c]))
        shards.append({"name": name, "n": n, "session": f"s{c}", "chunk": 0})
        off += n
    meta = {"preprocess": {}, "video_mode": mode, "frames": 4, "frames_per_slot": j, "size": 8,
            "class_names": sorted({x for ls in (labels or []) for x in ls if x})}
    write_store_json(path, meta, shards)
    return WindowStore(path)


def test_sharded_array_indexing():
    parts = [np.arange(6).reshape(3, 2), np.arange(6, 8).reshape(1, 2), np.arange(8, 16).reshape(4, 2)]
    whole = np.concatenate(parts)
    a = ShardedArray(parts)
    assert a.shape == (8, 2) and len(a) == 8
    for key in [0, 3, 7, -1, slice(None), slice(2, 6), slice(None, None, -3), [7, 0, 3, 3], np.array([5, 1]),
                whole[:, 0] % 4 == 0]:
        np.testing.assert_array_equal(a[key], whole[key])
    np.testing.assert_array_equal(a[2:6, 1], whole[2:6, 1])
    np.testing.assert_array_equal(np.asarray(a), whole)
    with pytest.raises(IndexError):
        a[8]


def test_store_round_trip_and_memmap(tmp_path):
    st = _store(tmp_path / "st")
    assert len(st) == 8 and st.imu.shape == (8, 10, 6) and st.video.shape == (8, 4, 8, 8, 3)
    assert isinstance(st.imu._parts[0], np.memmap)
    np.testing.assert_array_equal(st.imu[4], _shard(4, 4).imu[0])
    assert list(st.manifest["session"]) == ["s0"] * 3 + ["s1"] + ["s2"] * 4
    assert st.subjects() == ["S0", "S1", "S2"]
    np.testing.assert_array_equal(st.indices_for(subjects=["S1", "S2"]), np.arange(3, 8))
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "st" / "shards").iterdir())


def test_write_shard_is_atomic(tmp_path, monkeypatch):
    write_shard(tmp_path, "a-0000", _shard(2, 0))
    before = (tmp_path / "shards" / "a-0000" / "imu.npy").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(RuntimeError):
        write_shard(tmp_path, "a-0000", _shard(2, 100))
    assert (tmp_path / "shards" / "a-0000" / "imu.npy").read_bytes() == before
    assert [p.name for p in (tmp_path / "shards").iterdir()] == ["a-0000"]


def test_dataset_items_and_jitter(tmp_path):
    st = _store(tmp_path / "st", labels=[["walk", "", "run"], ["walk"], ["", "", "", "run"]])
    assert st.class_names == ["run", "walk"]
    ds = PairedWindowDataset(st, indices=[2, 3, 7])
    item = ds[0]
    assert item["imu"].dtype == torch.float32 and item["imu"].shape == (10, 6)
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (4, 8, 8, 3)
    assert (item["index"], item["label"], item["subject"]) == (2, 0, "S0")
    assert ds[1]["label"] == 1 and PairedWindowDataset(st)[1]["label"] == -1
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["imu"].shape == (3, 10, 6) and list(batch["index"]) == [2, 3, 7]

    st3 = _store(tmp_path / "j3", j=3)
    centre = PairedWindowDataset(st3)[0]["video"][:, 0, 0, 0].tolist()
    assert centre == [1, 4, 7, 10]  # middle of each slot's 3 frames
    jit = PairedWindowDataset(st3, frame_sampling="jitter", seed=1)
    draws = {tuple(jit[0]["video"][:, 0, 0, 0].tolist()) for _ in range(2)}
    assert len(draws) == 1  # deterministic per (seed, epoch, index)
    seen = set()
    for epoch in range(20):
        jit.set_epoch(epoch)
        v = jit[0]["video"][:, 0, 0, 0].numpy()
        assert all(3 * s <= v[s] < 3 * s + 3 for s in range(4))
        seen.add(tuple(v))
    assert len(seen) > 5


def test_embeddings_dataset(tmp_path):
    st = _store(tmp_path / "e", mode="embeddings")
    item = PairedWindowDataset(st)[5]
    assert item["video"].dtype == torch.float32 and item["video"].shape == (5,)
    assert item["video"][0].item() == 4 + 5  # shard 2 (offset 4), its window 1


def test_not_a_store(tmp_path):
    with pytest.raises(DataError, match="not a window store"):
        WindowStore(tmp_path)


def test_merge(tmp_path):
    a = _store(tmp_path / "a", sizes=(2, 3))
    # a second store holding sessions s2.. with the same settings
    b_path = tmp_path / "b"
    write_shard(b_path, "s2-0000", _shard(4, 5, session="s2"))
    write_store_json(b_path, {k: v for k, v in a.meta.items() if k not in ("shards", "num_windows")},
                     [{"name": "s2-0000", "n": 4, "session": "s2", "chunk": 0}])
    merged = WindowStore(merge_stores([b_path, a.path], tmp_path / "m").parent)
    assert len(merged) == 9 and list(merged.manifest["session"].unique()) == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(merged.imu[:5], a.imu[:])
    with pytest.raises(UserError, match="both"):
        merge_stores([a.path, a.path], tmp_path / "m2")
    c = _store(tmp_path / "c", sizes=(1,), mode="embeddings")
    with pytest.raises(UserError, match="video_mode differs"):
        merge_stores([a.path, c.path], tmp_path / "m3")
