"""Subnet YAML files: round trip, the released format, and typed errors for bad files."""
from __future__ import annotations

import random

import pytest

from automtl.errors import ArchError, ConfigError
from search_spaces.vit_mvt import load_subnet, save_subnet


def test_round_trip(tmp_path, micro):
    cand = micro.sample(random.Random(0))
    path = tmp_path / "sub" / "subnet.yaml"
    save_subnet(cand, path)
    assert load_subnet(path, micro) == micro.canonical(cand)
    assert load_subnet(path) == {k: cand[k] for k in load_subnet(path)}
    assert [p.name for p in path.parent.iterdir()] == ["subnet.yaml"]  # no temp file left
    text = path.read_text().splitlines()
    assert text[0] == f"depth.0: {cand['depth.0']}" and text[1].startswith("embed_channels.0:")


def test_released_style_and_chosen_values(tmp_path, micro):
    path = tmp_path / "s.yaml"
    path.write_text("depth.0: 2\nembed_channels.0: {chosen: 32}\nmlp_ratio.0: 1\nmlp_ratio.1: 2\n"
                    "num_heads.0: 1\nnum_heads.1: 2\n")
    got = load_subnet(path, micro)
    assert got["embed_channels.0"] == 32 and got["mlp_ratio.1"] == 2.0
    assert got["share.0.qkv.cls"] == "shared"


def test_unparsable_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("depth.0: 14\nembed_channels.0: [216\nnum_heads.0: 3\n")
    with pytest.raises(ConfigError) as err:
        load_subnet(path)
    assert str(path) in str(err.value) and "line" in str(err.value)


def test_not_a_mapping_and_missing_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_subnet(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_subnet(tmp_path / "nope.yaml")


def test_unknown_key_and_bad_value(tmp_path, micro):
    path = tmp_path / "s.yaml"
    path.write_text("depth.0: 2\nembed_channels.0: 32\nnum_head.0: 1\n")
    with pytest.raises(ArchError) as err:
        load_subnet(path)
    assert err.value.key == "num_head.0"
    path.write_text("depth.0: 2\nembed_channels.0: 32\nmlp_ratio.0: 1\nmlp_ratio.1: 3\n"
                    "num_heads.0: 1\nnum_heads.1: 2\n")
    with pytest.raises(ArchError, match=r"mlp_ratio\.1.*choices.*s\.yaml") as err:
        load_subnet(path, micro)
    assert err.value.key == "mlp_ratio.1"
    path.write_text("embed_channels.0: 32\n")
    with pytest.raises(ArchError, match=r"depth\.0"):
        load_subnet(path)


def test_save_rejects_unknown_genes(tmp_path):
    with pytest.raises(ArchError, match="width"):
        save_subnet({"depth.0": 1, "embed_channels.0": 32, "width": 3}, tmp_path / "x.yaml")
    assert not list(tmp_path.iterdir())
