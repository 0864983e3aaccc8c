"""ViT-MVT state-dict mismatches name the keys and shapes, worded as training checkpoints are."""
from __future__ import annotations

import pytest
import torch

from automtl.errors import CheckpointError
from automtl.train.resume import check_model_state
from search_spaces.vit_mvt import export_subnet
from search_spaces.vit_mvt._checkpoint import check_state_dict


def _broken(state: dict) -> dict:
    """``state`` without ``head.weight``, with an extra key and ``patch.weight`` of 7 channels."""
    out = dict(state)
    out.pop("head.weight")
    out["extra.weight"] = torch.zeros(1)
    out["patch.weight"] = torch.zeros(7, *state["patch.weight"].shape[1:])
    return out


@pytest.fixture()
def net(micro, micro_net):
    return export_subnet(micro_net, micro.smallest()).task_model("cls")


def test_mismatch_names_missing_unexpected_keys_and_shapes(net):
    state = net.state_dict()
    assert {"head.weight", "patch.weight"} <= set(state)
    shape = tuple(state["patch.weight"].shape)
    with pytest.raises(CheckpointError) as err:
        net.load_state_dict(_broken(state))
    msg = str(err.value)
    assert msg.startswith(f"state dict for {type(net).__name__}: does not fit the model; ")
    assert "missing keys ['head.weight']" in msg and "unexpected keys ['extra.weight']" in msg
    assert f"'patch.weight' is {(7, *shape[1:])} in the checkpoint but {shape} in the model" in msg
    with pytest.raises(CheckpointError) as loose:  # not strict: only the shapes matter
        net.load_state_dict(_broken(state), strict=False)
    assert "missing" not in str(loose.value) and "'patch.weight' is (7," in str(loose.value)


def test_wording_matches_training_checkpoints(net):
    bad = _broken(net.state_dict())
    with pytest.raises(CheckpointError) as ours:
        check_state_dict(net, bad, where="w.pt")
    with pytest.raises(CheckpointError) as resume:
        check_model_state(net, bad, "w.pt")
    assert str(ours.value).replace(" (is it a subnet of another size?)", "") == str(resume.value)


def test_long_lists_are_cut_with_a_count(net):
    with pytest.raises(CheckpointError, match=r"missing keys \[.*\] \(\+\d+ more\)"):
        net.load_state_dict({})
