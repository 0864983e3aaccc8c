"""The search-space protocol of ViT-MVT: sampling, mutation, crossover, canonical form, errors."""
from __future__ import annotations

import itertools
import json
import random

import pytest

from automtl.errors import ArchError, ConfigError
from automtl.spaces import SearchSpace
from search_spaces.vit_mvt import PRESETS, build_space


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
def test_spaces_follow_design_choices(name):
    space = build_space(name)
    assert isinstance(space, SearchSpace)
    assert space.tasks == ("cls", "seg")
    ch = space.gene_choices()
    assert ch["embed_channels.0"] == list(PRESETS[name].embeds)
    assert ch["mlp_ratio.0"] == [3.0, 3.5, 4.0]
    assert f"num_heads.{PRESETS[name].max_depth - 1}" in ch
    assert ch["share.0.qkv.seg"] == ["shared", "specific"]
    assert {"tiny": (192, 216, 240), "small": (320, 384, 448), "base": (528, 576, 624)}[name] == \
        PRESETS[name].embeds


def test_samples_are_valid_json_and_canonical(micro):
    rng = random.Random(0)
    for _ in range(50):
        c = micro.sample(rng)
        micro.validate(c)
        assert json.loads(json.dumps(c)) == c
        assert micro.canonical(c) == c
        d = c["depth.0"]
        assert f"num_heads.{d - 1}" in c and f"num_heads.{d}" not in c


def test_sample_covers_choices(micro):
    rng = random.Random(1)
    seen = {micro.sample(rng)["embed_channels.0"] for _ in range(40)}
    assert seen == {32, 48}


def test_canonical_drops_layers_beyond_depth_and_fills_sharing(micro):
    c = micro.sample(random.Random(2))
    c = {**c, "depth.0": 2, "num_heads.2": 1, "mlp_ratio.2": 2.0}
    c = {k: v for k, v in c.items() if k != "share.0.fc1.cls"}
    can = micro.canonical(c)
    assert "num_heads.2" not in can and "mlp_ratio.2" not in can
    assert can["share.0.fc1.cls"] == "shared"
    assert micro.key(c) == micro.key(can)
    assert micro.key(can) != micro.key({**can, "num_heads.0": 3 - can["num_heads.0"]})


def test_mutate_changes_genes_with_probabilities(micro):
    rng = random.Random(3)
    c = micro.sample(rng)
    assert micro.mutate(c, rng, p_layer=0.0, p_global=0.0) == c
    changed = 0
    for _ in range(30):
        m = micro.mutate(c, rng, p_layer=1.0, p_global=1.0)
        micro.validate(m)
        assert micro.canonical(m) == m
        changed += m != c
    assert changed >= 25


def test_mutate_depth_adds_and_drops_layers(micro):
    c = micro.canonical(micro.smallest())
    rng = random.Random(4)
    depths = {micro.mutate(c, rng, p_layer=0.0, p_global=1.0)["depth.0"] for _ in range(30)}
    assert depths == {2, 3}
    for _ in range(10):
        m = micro.mutate(c, rng, p_layer=0.0, p_global=1.0)
        assert sum(k.startswith("num_heads.") for k in m) == m["depth.0"]


def test_crossover_mixes_same_depth_parents(micro):
    rng = random.Random(5)
    a = micro.smallest()
    b = micro.canonical({**micro.largest(), "depth.0": 2})
    assert micro.can_crossover(a, b)
    kids = [micro.crossover(a, b, rng) for _ in range(20)]
    for k in kids:
        micro.validate(k)
        assert all(k[g] in (a[g], b[g]) for g in k)
    assert any(k != a and k != b for k in kids)
    deep = micro.canonical({**micro.largest()})
    assert not micro.can_crossover(a, deep)
    with pytest.raises(ArchError, match="depth.0"):
        micro.crossover(a, deep, rng)


def test_param_range_is_exact_extremes(micro):
    lo, hi = micro.param_range()
    rng = random.Random(6)
    totals = [micro.count_params(micro.sample(rng))["total"] for _ in range(300)]
    assert lo <= min(totals) and max(totals) <= hi
    assert micro.count_params(micro.smallest())["total"] == lo
    assert micro.count_params(micro.largest())["total"] == hi


def test_total_counts_shared_once(micro):
    c = micro.smallest()
    counts = micro.count_params(c)
    # everything shared: the two tasks differ only by their heads
    heads = {"cls": 32 * 10 + 10, "seg": 32 * 5 + 5}
    assert counts["total"] == counts["cls"] + heads["seg"]
    spec = {k: ("specific" if k.startswith("share.") else v) for k, v in c.items()}
    both = micro.count_params(spec)
    assert both["cls"] == counts["cls"] and both["seg"] == counts["seg"]
    assert both["total"] > counts["total"]
    # count_params(arch, sharing) with the genes kept apart
    arch = {k: v for k, v in c.items() if not k.startswith("share.")}
    sharing = {k: v for k, v in spec.items() if k.startswith("share.")}
    assert micro.count_params(arch, sharing) == both


@pytest.mark.parametrize("bad, key", [
    ({"bogus": 1}, "bogus"),
    ({"num_heads.0": 5}, "num_heads.0"),
    ({"mlp_ratio.1": 3.0}, "mlp_ratio.1"),
    ({"embed_channels.0": 40}, "embed_channels.0"),
    ({"depth.0": 9}, "depth.0"),
    ({"num_heads.7": 1}, "num_heads.7"),
    ({"share.0.qkv.depth": "shared"}, "share.0.qkv.depth"),
    ({"share.0.attn.cls": "shared"}, "share.0.attn.cls"),
    ({"share.0.qkv.cls": "yes"}, "share.0.qkv.cls"),
    ({"num_heads.0": True}, "num_heads.0"),
])
def test_validate_names_the_key(micro, bad, key):
    c = {**micro.smallest(), **bad}
    with pytest.raises(ArchError) as err:
        micro.validate(c)
    assert err.value.key == key and key in str(err.value)
    if key in ("num_heads.0", "mlp_ratio.1", "embed_channels.0", "depth.0") and bad[key] is not True:
        # genes the fast count reads: an invalid value still gives a typed error
        with pytest.raises(ArchError, match=key.replace(".", r"\.")):
            micro.count_params(c)


def test_depth_beyond_supernet_message(micro):
    with pytest.raises(ArchError, match="beyond the supernet"):
        micro.validate({**micro.smallest(), "depth.0": 9})


def test_missing_gene(micro):
    c = micro.smallest()
    del c["num_heads.1"]
    with pytest.raises(ArchError, match="num_heads.1"):
        micro.validate(c)
    with pytest.raises(ArchError, match="num_heads.1"):
        micro.count_params(c)


def test_bad_space_arguments():
    with pytest.raises(ConfigError, match="name"):
        build_space("huge")
    with pytest.raises(ConfigError, match="num_outputs"):
        build_space("tiny", tasks=("cls", "mystery"))
    with pytest.raises(ConfigError, match="tasks"):
        build_space("tiny", tasks=("cls", "cls"))


def test_single_task_space_has_no_sharing_genes():
    space = build_space("tiny", tasks=("cls",))
    c = space.sample(random.Random(0))
    assert not any(k.startswith("share.") for k in c)
    assert space.count_params(c)["cls"] == space.count_params(c)["total"]


def test_micro_space_is_enumerable_and_param_range_exact(micro):
    """Brute force over every single-task architecture of the micro space."""
    single = micro.with_tasks(("cls",))
    totals = []
    for depth, embed in itertools.product((2, 3), (32, 48)):
        for heads in itertools.product((1, 2), repeat=depth):
            for ratios in itertools.product((1.0, 2.0), repeat=depth):
                c = {"depth.0": depth, "embed_channels.0": embed}
                c.update({f"num_heads.{i}": h for i, h in enumerate(heads)})
                c.update({f"mlp_ratio.{i}": r for i, r in enumerate(ratios)})
                totals.append(single.count_params(c)["total"])
    assert (min(totals), max(totals)) == single.param_range()


def test_missing_sharing_genes_count_as_shared(micro):
    c = micro.sample(random.Random(8))
    partial = {k: v for k, v in c.items() if not (k.startswith("share.1.") and v == "shared")}
    assert micro.count_params(partial) == micro.count_params(micro.canonical(partial))
    arch_only = {k: v for k, v in c.items() if not k.startswith("share.")}
    assert micro.count_params(arch_only) == micro.count_params(micro.canonical(arch_only))
    with pytest.raises(ArchError, match=r"share\.0\.qkv\.cls"):
        micro.count_params({**c, "share.0.qkv.cls": "maybe"})


def test_parse_memo_returns_the_unmemoised_result_and_still_validates(micro):
    """parse() is memoised for search speed; it must give what a fresh parse gives, and a
    value of another type (13.0 or True for 13) is still checked, not served from the memo."""
    from search_spaces.vit_mvt import _genes as G

    rng = random.Random(3)
    for _ in range(50):
        c = micro.sample(rng)
        assert micro.parse(c) == G.parse(c, micro.cfg, micro.tasks)
        assert micro.parse(dict(c)) is micro.parse(c)               # served from the memo
        canon = micro.canonical(c)
        assert canon == G.to_genes(G.parse(c, micro.cfg, micro.tasks), micro.tasks)
        canon["x"] = 1                                              # a caller's own copy
        assert "x" not in micro.canonical(c)
        depth = c[G.DEPTH]
        for other in (float(depth), True):
            with pytest.raises(ArchError, match="depth"):
                micro.parse({**c, G.DEPTH: other})
        c[G.DEPTH] = micro.cfg.depths[-1] + 1                       # the same dict, mutated
        with pytest.raises(ArchError):
            micro.parse(c)


@pytest.mark.parametrize("key, says", [
    ("bogus", "unknown gene; expected depth.0"),
    ("num_head.0", "num_heads.<i>"),
    ("share.0.qkv.depth", "unknown task 'depth'"),
    ("share.0.attn.cls", "unknown linear 'attn'"),
    ("num_heads.7", "beyond the supernet depth"),
    ("num_heads.01", "canonical spelling"),
])
def test_count_refuses_unknown_gene(micro, key, says):
    """The fast table counts read only the genes they need: a misspelt or foreign gene must
    still be refused by name (it would otherwise be silently ignored)."""
    c = {**micro.smallest(), key: micro.smallest()["num_heads.0"] if "heads" in key else "shared"}
    for count in (micro.count_params, micro.backbone_params):
        with pytest.raises(ArchError, match=says) as err:
            count(c)
        assert err.value.key == key
    arch = {k: v for k, v in micro.smallest().items() if not k.startswith("share.")}
    with pytest.raises(ArchError, match=says):
        micro.count_params(arch, {key: "shared"})
