"""The one atomic writer: complete files or none, no temp file outlives a failure, stale temps
of dead processes are cleaned, checkpoints load safely."""
import os
import subprocess
import sys

import pytest
import torch

from automtl.errors import CheckpointError
from automtl.io import (
    DIGEST_KEY,
    atomic_save,
    atomic_write,
    atomic_write_text,
    clean_stale_temps,
    content_digest,
    pid_alive,
    safe_load,
    temp_name,
)


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / "ckpt" / f".latest.pt.tmp{dead}"
    stale.parent.mkdir()
    stale.write_bytes(b"partial")
    live = tmp_path / f".other.json.tmp{os.getppid()}"
    live.write_text("{}")
    unrelated = tmp_path / ".hidden.tmpfile"
    unrelated.write_text("x")
    assert clean_stale_temps(tmp_path) == [stale]
    assert live.exists() and unrelated.exists() and not stale.exists()
    assert temp_name(tmp_path / "x.pt").name == f".x.pt.tmp{os.getpid()}"


def test_pid_alive():
    assert pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)


def test_safe_load_round_trip_and_errors(tmp_path):
    path = atomic_save({"w": torch.ones(2)}, tmp_path / "c.pt")
    assert torch.equal(safe_load(path)["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        safe_load(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        safe_load(tmp_path / "bad.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        safe_load(tmp_path / "list.pt")


# --- content digest: corruption inside a checkpoint is refused, not loaded ---------------------

_MARK = 0.123456789  # a value whose float32 bytes appear nowhere else in the file
_N = 1 << 18  # 1 MiB of payload


def _payload_offset(path, n=_N):
    """Byte offset of the middle of the constant tensor's data inside the saved zip."""
    raw = path.read_bytes()
    pattern = torch.tensor([_MARK] * 256).numpy().tobytes()
    start = raw.find(pattern)
    assert start >= 0 and raw.find(pattern, start + 4 * n) < 0
    return start + 2 * n


def _corrupt(path, offset, n=64):
    """Overwrite ``n`` bytes at ``offset`` with other bytes."""
    raw = bytearray(path.read_bytes())
    raw[offset:offset + n] = bytes(b ^ 0xA5 for b in raw[offset:offset + n])
    path.write_bytes(bytes(raw))


def _checkpoint():
    return {"model": {"w": torch.full((_N,), _MARK), "b": torch.arange(5.0)}, "step": 3}


def test_corruption_in_the_middle_of_a_tensor_is_refused(tmp_path):
    digested, plain = tmp_path / "digested.pt", tmp_path / "plain.pt"
    atomic_save(_checkpoint(), digested)
    torch.save(_checkpoint(), plain)
    for path in (digested, plain):
        _corrupt(path, _payload_offset(path))
    silently_wrong = torch.load(plain, weights_only=True)  # what torch alone lets through
    assert not torch.equal(silently_wrong["model"]["w"], _checkpoint()["model"]["w"])
    with pytest.raises(CheckpointError, match=r"digested\.pt: content digest mismatch: the file is corrupted"):
        safe_load(digested)


def test_corruption_of_a_pickled_value_is_refused(tmp_path):
    path = atomic_save({"run": "phase-" + "a" * 40, "w": torch.ones(3)}, tmp_path / "c.pt")
    raw = path.read_bytes()
    at = raw.find(b"a" * 40)
    assert at >= 0
    path.write_bytes(raw[:at] + b"b" + raw[at + 1:])
    with pytest.raises(CheckpointError, match="content digest mismatch"):
        safe_load(path)


def test_tampered_digest_is_refused(tmp_path):
    torch.save({"w": torch.ones(2), DIGEST_KEY: "sha256:" + "0" * 64}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"a\.pt: content digest mismatch"):
        safe_load(tmp_path / "a.pt")
    torch.save({"w": torch.ones(2), DIGEST_KEY: 7}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"b\.pt: content digest mismatch.*unreadable digest"):
        safe_load(tmp_path / "b.pt")


def test_digest_is_stored_and_removed_on_load(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    state = model.state_dict()
    path = atomic_save(state, tmp_path / "sd.pt")
    assert DIGEST_KEY not in state  # the caller's dict is left alone
    raw = torch.load(path, weights_only=True)
    assert raw[DIGEST_KEY].startswith("sha256:") and list(raw)[-1] == DIGEST_KEY
    back = safe_load(path)
    assert list(back) == list(state) and type(back) is type(state)
    assert back._metadata == state._metadata  # versions of BatchNorm & co. survive
    model.load_state_dict(back)
    again = atomic_save(back, tmp_path / "again.pt")  # re-saving a loaded dict re-digests it
    assert torch.load(again, weights_only=True)[DIGEST_KEY] == raw[DIGEST_KEY]


def test_digest_less_state_dict_still_loads(tmp_path):
    state = torch.nn.Linear(3, 2).state_dict()
    torch.save(state, tmp_path / "third_party.pt")
    back = safe_load(tmp_path / "third_party.pt")
    assert list(back) == list(state) and all(torch.equal(back[k], v) for k, v in state.items())


def test_digest_covers_every_kind_of_value_and_survives_a_round_trip(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    obj = {"opt": opt.state_dict(), "none": None, "flag": True, "tau": 0.1, "names": {"b", "a"},
           "size": torch.Size([2, 3]), "dtype": torch.float16, "view": torch.arange(10)[::3],
           "half": torch.ones(3, dtype=torch.bfloat16), "empty": torch.empty(0), "scalar": torch.tensor(2),
           "bool": torch.tensor([True, False]), "conj": torch.tensor([1 + 2j]).conj()}
    back = safe_load(atomic_save(obj, tmp_path / "all.pt"))
    assert sorted(back) == sorted(obj) and back["names"] == {"a", "b"}
    assert content_digest({"x": 1}) != content_digest({"x": True}) != content_digest({"x": 1.0})
    assert content_digest({"t": torch.zeros(2)}) != content_digest({"t": torch.zeros(1, 2)})


def test_set_digest_does_not_depend_on_the_hash_seed():
    code = ("from automtl.io import content_digest; "
            "print(content_digest({'s': {'alpha', 'beta', 'gamma', 'delta', 'epsilon'}}))")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(digests) == 1


def test_any_torch_load_failure_is_a_checkpoint_error(tmp_path, monkeypatch):
    path = atomic_save(_checkpoint(), tmp_path / "c.pt")
    half = tmp_path / "half.pt"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a cut zip: torch's RuntimeError
    with pytest.raises(CheckpointError, match=r"half\.pt: cannot be read.*RuntimeError"):
        safe_load(half)
    for exc in (RuntimeError("PytorchStreamReader failed"), KeyError("x"), MemoryError(), EOFError()):
        monkeypatch.setattr(torch, "load", lambda *a, _e=exc, **k: (_ for _ in ()).throw(_e))
        with pytest.raises(CheckpointError, match=rf"c\.pt: cannot be read.*{type(exc).__name__}"):
            safe_load(path)
