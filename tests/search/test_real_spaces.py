"""The AutoMTL policy space and the ViT-MVT space under the search; the supernet evaluator."""
from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from automtl.errors import ArchError
from automtl.registry import EVALUATORS, SPACES, build
from automtl.search import EvolutionSearch, EvolutionSettings
from automtl.search.supernet_evaluator import SupernetEvaluator, recalibrate_bn
from automtl.spaces import PolicySearchSpace
from automtl.supernet import MTLModel, Policy

TASKS = ("segment_semantic", "depth_zbuffer")


def _backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())


@pytest.fixture(scope="module")
def model() -> MTLModel:
    torch.manual_seed(0)
    heads = {"segment_semantic": nn.Conv2d(16, 5, 1), "depth_zbuffer": nn.Conv2d(16, 1, 1)}
    return MTLModel(_backbone(), heads, input_shape=(1, 3, 32, 32)).eval()


@pytest.fixture(scope="module")
def pspace(model) -> PolicySearchSpace:
    return PolicySearchSpace(model)


@pytest.fixture(scope="module")
def loaders():
    from automtl.data.synthetic import make_loaders

    return make_loaders(TASKS, size=32, n_train=32, n_val=16, batch_size=8, seed=0)


def test_policy_space_genes_and_counts(pspace, model):
    assert set(pspace.tasks) == set(TASKS)
    assert len(pspace.gene_choices()) == len(model.policy_layers) * 2
    rng = random.Random(0)
    for _ in range(20):
        cand = pspace.sample(rng)
        pspace.validate(cand)
        policy = pspace.to_policy(cand)
        assert pspace.from_policy(policy) == cand
        assert pspace.count_params(cand) == model.count_params(policy)
        branched = model.compile(policy)
        assert pspace.count_params(cand)["total"] == sum(p.numel() for p in branched.parameters())
    lo, hi = pspace.param_range()
    share = model.count_params(Policy.all(model, "share"))["total"]
    spec = model.count_params(Policy.all(model, "specialize"))["total"]
    assert lo <= share < spec == hi


def test_policy_space_operators_and_errors(pspace):
    rng = random.Random(1)
    a, b = pspace.sample(rng), pspace.sample(rng)
    assert pspace.mutate(a, rng, p_layer=0.0) == a
    child = pspace.crossover(a, b, rng)
    assert all(child[g] in (a[g], b[g]) for g in child)
    gene = next(iter(a))
    with pytest.raises(ArchError, match=gene):
        pspace.validate(dict(a, **{gene: "fuse"}))
    with pytest.raises(ArchError, match="nolayer/segment_semantic"):
        pspace.validate(dict(a, **{"nolayer/segment_semantic": "share"}))


def test_policy_search_end_to_end(pspace, model, loaders, tmp_path):
    train, val = loaders
    ev = SupernetEvaluator(model, pspace, val, n_val_batches=1, train_loaders=train, bn_batches=1,
                           device="cpu")
    lo, hi = pspace.param_range()
    settings = EvolutionSettings(budget=(lo, (lo + hi) // 2), generations=2, population=4,
                                 top_k=2, n_mutations=2, n_crossovers=2)
    search = EvolutionSearch(pspace, ev, settings, storage="memory", seed=0, progress=False,
                             work_dir=tmp_path)
    res = search.run()
    search.close()
    assert res.n_complete == 8 and lo <= res.best_params["total"] <= (lo + hi) // 2
    saved = Policy.load(tmp_path / "policy.json", model=model)
    assert pspace.from_policy(saved) == res.best
    assert ev.higher_is_better == {"segment_semantic": True, "depth_zbuffer": False}


def test_supernet_evaluator_fixed_subset_and_bn_restored(pspace, model, loaders):
    train, val = loaders
    ev = SupernetEvaluator(model, pspace, val, n_val_batches=1, train_loaders=train, bn_batches=2,
                           device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cand = pspace.sample(random.Random(3))
    s1 = ev.evaluate(cand)
    s2 = ev.evaluate(cand)
    assert s1 == s2                                   # fixed subset, deterministic
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # BN statistics restored
    assert set(s1) == set(TASKS)


def test_recalibrate_bn_uses_the_batches():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    x = torch.randn(4, 1, 3, 3) * 3 + 5
    n = recalibrate_bn(net, [(x, None)], net, torch.device("cpu"))
    assert n == 1
    expected = net[0](x).mean(dim=(0, 2, 3))
    assert torch.allclose(net[1].running_mean, expected.detach(), atol=1e-5)
    assert net[1].momentum == 0.1
    assert recalibrate_bn(nn.Sequential(nn.Linear(2, 2)), [(x, None)], net, torch.device("cpu")) == 0


def test_vit_space_search_writes_subnet_yaml(tmp_path, loaders):
    from search_spaces.vit_mvt import load_subnet

    space = build(SPACES, dict(type="vit_mvt", preset=None, name="micro", tasks=TASKS,
                               num_outputs=dict(segment_semantic=5, depth_zbuffer=1),
                               depths=(1, 2), embeds=(16, 24), heads=(1,), mlp_ratios=(2.0,),
                               img_size=32), key="space")
    evaluator_cfg = dict(type="supernet", data=dict(size=32, n_train=16, n_val=8, batch_size=8),
                         train=dict(steps=2, sampling="sandwich", n_random=1), n_val_batches=1,
                         device="cpu")
    ev = build(EVALUATORS, evaluator_cfg, space, key="evaluator", work_dir=tmp_path, seed=0)
    assert (tmp_path / "supernet.pt").is_file()
    lo, hi = space.param_range()
    settings = EvolutionSettings(budget=(lo, hi), generations=2, population=4, top_k=2,
                                 n_mutations=2, n_crossovers=2)
    search = EvolutionSearch(space, ev, settings, storage="memory", seed=0, progress=False,
                             work_dir=tmp_path)
    res = search.run()
    search.close()
    assert res.n_complete == 8
    best = load_subnet(tmp_path / "best_subnet.yaml", space)
    assert space.key(best) == space.key(res.best)
    assert json.loads((tmp_path / "result.json").read_text())["best"]["params"]["total"] == \
        space.count_params(res.best)["total"]
    # a second evaluator reuses the cached supernet weights instead of training again
    ev2 = build(EVALUATORS, evaluator_cfg, space, key="evaluator", work_dir=tmp_path, seed=0)
    assert ev2.evaluate(res.best) == pytest.approx(ev.evaluate(res.best))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_supernet_evaluator_on_cuda_matches_cpu(pspace, model, loaders):
    import copy

    _, val = loaders
    cand = pspace.sample(random.Random(5))
    cpu = SupernetEvaluator(copy.deepcopy(model), pspace, val, n_val_batches=1, device="cpu")
    gpu = SupernetEvaluator(copy.deepcopy(model), pspace, val, n_val_batches=1, device="cuda")
    a, b = cpu.evaluate(cand), gpu.evaluate(cand)
    assert a.keys() == b.keys()
    assert all(abs(a[t] - b[t]) <= 1e-3 * max(1.0, abs(a[t])) for t in a)


def _micro_vit():
    from search_spaces.vit_mvt.registration import build_vit_space

    return build_vit_space(None, TASKS, name="micro", num_outputs=dict(segment_semantic=5, depth_zbuffer=1),
                           depths=(1, 2), embeds=(16, 24), heads=(1,), mlp_ratios=(2.0,), img_size=32)


@pytest.mark.parametrize("sampling,per_step", [("uniform", 1), ("sandwich", 3)])
def test_train_supernet_sampling(loaders, sampling, per_step):
    from automtl.train.supernet import train_supernet

    space = _micro_vit()
    net = space.build_supernet()
    seen = []
    activate = space.activate

    def spy(n, cand):  # the subnets training activates, in order
        seen.append(space.key(cand))
        activate(n, cand)

    space.activate = spy
    before = [p.detach().clone() for p in net.parameters()]
    hist = train_supernet(net, space, loaders[0], steps=2, sampling=sampling, n_random=1,
                          device="cpu")
    assert len(hist) == 2 and all(h > 0 for h in hist)
    assert len(seen) == 2 * per_step
    if sampling == "sandwich":
        assert seen[0] == space.key(space.largest()) and seen[1] == space.key(space.smallest())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_train_supernet_nan_is_typed(loaders):
    from automtl.errors import TrainingError
    from automtl.train.supernet import train_supernet

    space = _micro_vit()
    nan = {t: (lambda pred, y: pred.sum() * float("nan")) for t in TASKS}
    with pytest.raises(TrainingError, match="step 0, task 'segment_semantic'"):
        train_supernet(space.build_supernet(), space, loaders[0], steps=1, criteria=nan,
                       device="cpu")


def test_policy_space_extremes(pspace, model):
    assert pspace.count_params(pspace.largest())["total"] == pspace.param_range()[1]
    assert pspace.count_params(pspace.smallest())["total"] == pspace.param_range()[0]
