"""Resumable streams, atomic checkpoint writes and safe RNG capture."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from automtl.errors import CheckpointError, ConfigError
from automtl.train.checkpoint import atomic_save, rng_state, safe_load, set_rng_state
from automtl.train.streams import TaskStream, split_indices


def _loader(n=10, batch=4):
    return DataLoader(TensorDataset(torch.arange(n)), batch_size=batch)


def test_stream_resumes_mid_epoch_to_same_batches():
    a = TaskStream(_loader(), seed=3)
    first = [a.next()[0].tolist() for _ in range(3)]  # crosses an epoch (2 full batches per epoch)
    b = TaskStream(_loader(), seed=3)
    b.load_state_dict(a.state_dict())
    assert [a.next()[0].tolist() for _ in range(4)] == [b.next()[0].tolist() for _ in range(4)]
    assert len({tuple(x) for x in first[:2]}) == 2 and all(len(x) == 4 for x in first)


def test_stream_ranks_take_disjoint_slices_of_global_batch():
    whole = TaskStream(_loader(16, 8), seed=1)
    r0 = TaskStream(_loader(16, 8), seed=1, rank=0, world=2)
    r1 = TaskStream(_loader(16, 8), seed=1, rank=1, world=2)
    for _ in range(3):
        g = whole.next()[0].tolist()
        assert r0.next()[0].tolist() + r1.next()[0].tolist() == g
    with pytest.raises(ConfigError, match="multiple of 3"):
        TaskStream(_loader(16, 8), seed=1, world=3, name="seg")


def test_split_indices_disjoint_and_complete():
    w, p = split_indices(21, 0.5, seed=0)
    assert not set(w) & set(p) and sorted(w + p) == list(range(21))
    assert split_indices(21, 0.5, seed=0) == (w, p)


def test_atomic_save_keeps_old_file_when_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_save({"x": torch.ones(2)}, path)

    def broken(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        atomic_save({"x": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(safe_load(path)["x"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    atomic_save({"rng": rng_state()}, tmp_path / "r.pt")
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect


class _Unsafe:
    """A class ``weights_only`` loading refuses."""


def test_safe_load_names_missing_and_unsafe_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        safe_load(tmp_path / "nope.pt")

    torch.save({"x": _Unsafe()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        safe_load(tmp_path / "evil.pt")
