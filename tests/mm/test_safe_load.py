"""mmengine checkpoints load weights-only through exactly the allow-list; anything else is refused."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

from automtl.errors import CheckpointError


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _mmengine_like_checkpoint() -> dict:
    from mmengine.logging.history_buffer import HistoryBuffer

    hub = HistoryBuffer()
    for v in (1.0, 2.0, 4.0):
        hub.update(v)
    return {"meta": {"epoch": 1, "message_hub": {"log_scalars": {"train/loss": hub},
                                                  "seed": np.int64(3), "arr": np.arange(4, dtype=np.float32),
                                                  "dtype": np.dtype("float16")}},
            "state_dict": {"w": torch.ones(2)}}


def test_mmengine_checkpoint_loads_weights_only():
    from automtl.mm.safe_load import allow_mmengine_checkpoints

    buf = io.BytesIO()
    torch.save(_mmengine_like_checkpoint(), buf)
    allow_mmengine_checkpoints()
    buf.seek(0)
    out = torch.load(buf)  # weights_only is torch's default
    hub = out["meta"]["message_hub"]
    assert hub["log_scalars"]["train/loss"].mean() == pytest.approx(7 / 3)
    assert hub["arr"].tolist() == [0, 1, 2, 3] and hub["dtype"] == np.dtype("float16")


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    from automtl.mm.runner import load_weights

    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match="system"):
        load_weights(torch.nn.Linear(1, 1), str(path))
    assert not marker.exists()
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_weights_that_do_not_fit_name_keys_and_shapes(tmp_path):
    from automtl.mm.runner import load_weights

    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"weight": torch.ones(3, 2), "bias": torch.ones(3), "extra": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*extra.*shapes differ.*weight"):
        load_weights(torch.nn.Linear(2, 2), str(path))
