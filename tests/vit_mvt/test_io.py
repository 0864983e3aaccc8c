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


_GOOD = "depth.0: 2\nembed_channels.0: 32\nmlp_ratio.0: 1.0\nmlp_ratio.1: 2\nnum_heads.0: 1\nnum_heads.1: 2\n"


def test_non_utf8_file_is_a_config_error_naming_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(_GOOD.encode() + "# r\u00e9seau\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text: byte 0xe9 at line 7"):
        load_subnet(path)


@pytest.mark.parametrize("text, key, lines", [
    (_GOOD + "depth.0: 3\n", "depth.0", (1, 7)),
    (_GOOD.replace("num_heads.1: 2", "num_heads.0: 2"), "num_heads.0", (5, 6)),
    (_GOOD.replace("embed_channels.0: 32", "embed_channels.0: {chosen: 32, chosen: 48}"), "chosen", (2, 2)),
])
def test_duplicated_key_is_refused_naming_key_and_both_lines(tmp_path, micro, text, key, lines):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    for space in (None, micro):
        with pytest.raises(ConfigError, match=rf"dup\.yaml: key '{key}': duplicated key at lines "
                                              rf"{lines[0]} and {lines[1]}") as err:
            load_subnet(path, space)
        assert err.value.key == key


@pytest.mark.parametrize("key, value", [
    ("depth.0", "-3"), ("depth.0", "0"), ("depth.0", "2.0"), ("embed_channels.0", "0"),
    ("embed_channels.0", "wide"), ("num_heads.0", "-1"), ("num_heads.1", "true"), ("num_heads.1", "{}"),
    ("mlp_ratio.0", "0"), ("mlp_ratio.1", "-2.5"), ("mlp_ratio.0", ".nan"), ("mlp_ratio.0", ".inf"),
    ("mlp_ratio.1", "four"), ("mlp_ratio.0", "[1, 2]"), ("share.0.qkv.cls", "maybe"), ("share.1.fc1.seg", "1"),
])
def test_out_of_range_value_without_a_space_names_key_and_value(tmp_path, key, value):
    lines = [ln for ln in _GOOD.splitlines() if not ln.startswith(f"{key}:")]
    path = tmp_path / "range.yaml"
    path.write_text("\n".join([*lines, f"{key}: {value}"]) + "\n")
    with pytest.raises(ArchError, match=rf"'{key}': value .* out of range: must be .*range\.yaml") as err:
        load_subnet(path)
    assert err.value.key == key and repr(err.value.value) in str(err.value)


def test_generic_bounds_accept_valid_values_and_need_every_layer(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(_GOOD.replace("mlp_ratio.0: 1.0", "mlp_ratio.0: {chosen: 3}")
                    + "share.1.fc2.cls: specific\nnum_heads.5: 4\n")  # genes beyond the depth are ignored
    got = load_subnet(path)
    assert got["share.1.fc2.cls"] == "specific" and got["mlp_ratio.0"] == 3
    path.write_text(_GOOD.replace("num_heads.1: 2\n", ""))
    with pytest.raises(ArchError, match=r"'num_heads\.1': missing gene in .*s\.yaml \(the depth is 2\)"):
        load_subnet(path)


def test_save_refuses_out_of_range_values(tmp_path):
    good = {"depth.0": 1, "embed_channels.0": 32, "num_heads.0": 1, "mlp_ratio.0": 2.0}
    for key, value in (("depth.0", -3), ("embed_channels.0", 0), ("num_heads.0", -1), ("mlp_ratio.0", 0)):
        with pytest.raises(ArchError, match=rf"'{key}': value {value} out of range"):
            save_subnet({**good, key: value}, tmp_path / "x.yaml")
    assert not list(tmp_path.iterdir())
    save_subnet(good, tmp_path / "x.yaml")
    assert load_subnet(tmp_path / "x.yaml") == good
