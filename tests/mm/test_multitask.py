"""One multi-task model across mmpretrain, mmdet and mmseg (configs/mtl): mixed batches, one
loss dict, one evaluator with the T-Score, shared blocks run once."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
import torch

from automtl.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "mtl" / "vit_mvt_tiny_cls_det_seg.py"
MERGED_CONFIG = ROOT / "configs" / "mtl" / "vit_mvt_tiny_cls_det_seg_merged.py"
T_SUBNET = ROOT / "configs" / "nas" / "vit_mvt_tiny" / "subnet.yaml"

# the shipped config at a 64×64 input with narrow heads, 2 iterations (published settings stay
# in the shipped file)
SMALL = """
_base_ = ["{base}"]
classes3 = ("sphere", "box", "cylinder")
model = dict(
    backbone=dict(drop_path_rate=0.0),
    tasks=dict(
        cls=dict(head=dict(num_classes=3, topk=(1,))),
        det=dict(
            neck=dict(out_channels=32),
            rpn_head=dict(in_channels=32, feat_channels=32),
            roi_head=dict(bbox_roi_extractor=dict(out_channels=32),
                          bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=3),
                          mask_roi_extractor=dict(out_channels=32),
                          mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32, num_classes=3)),
            train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=32))),
            test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=20))),
        seg=dict(data_preprocessor=dict(size=(64, 64)), neck=dict(out_channels=32),
                 decode_head=dict(in_channels=[32] * 4, channels=32, pool_scales=(1, 2)),
                 auxiliary_head=dict(in_channels=32, channels=16))))
cls_pipe = [dict(type="LoadImageFromFile"), dict(type="PackInputs")]
det_train = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
             dict(type="PackDetInputs")]
det_test = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(64, 64), keep_ratio=True),
            dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
            dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"))]
seg_pipe = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True),
            dict(type="PackSegInputs")]
def _sets(cls_pipe, det_pipe, seg_pipe, **det):
    return dict(cls=dict(metainfo=dict(classes=classes3), pipeline=cls_pipe),
                det=dict(metainfo=dict(classes=classes3), pipeline=det_pipe, **det),
                seg=dict(pipeline=seg_pipe))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        batch_sampler=dict(shares=dict(cls=1, det=1, seg=2)),
                        dataset=dict(datasets=_sets(cls_pipe, det_train, seg_pipe, filter_cfg=dict(min_size=0))))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(datasets=_sets(cls_pipe, det_test, seg_pipe)))
test_dataloader = val_dataloader
val_evaluator = dict(metrics=dict(cls=dict(topk=(1,))))
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=100)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, save_optimizer=False, save_best=None))
"""


def _roots(tiny_sets) -> list[str]:
    return [f"cls_data_root={tiny_sets['imagenet']}/", f"det_data_root={tiny_sets['coco']}/",
            f"seg_data_root={tiny_sets['ade20k']}/"]


def _small(folder: Path, base: Path) -> str:
    path = folder / f"small_{base.name}"
    path.write_text(textwrap.dedent(SMALL).replace("{base}", str(base)))
    return str(path)


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> str:
    """The shipped config (learned sharing) at the small setting."""
    return _small(tmp_path_factory.mktemp("mtl_cfg"), CONFIG)


@pytest.fixture()
def no_yapf(monkeypatch) -> None:
    """mmengine pretty-prints the config with yapf 4-5 times per Runner (log, dump, visualizer):
    ~2 s each for this config on a busy 2-core machine, and not what is tested here."""
    import mmengine.config.config as mm_config

    monkeypatch.setattr(mm_config, "FormatCode", lambda text, style_config=None: (text, False))


@pytest.fixture(scope="module")
def model(small_config):
    """The small config's model, built as the Runner builds it (default scope mmdet)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import automtl.mm.register  # noqa: F401

    cfg = Config.fromfile(small_config)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmdet"):
        return MODELS.build(cfg.model).eval()


@pytest.mark.slow
def test_multitask_model_trains_and_reports_three_metrics(tiny_sets, tmp_path, no_yapf) -> None:
    """The deployed form (fixed sharing, seg leaving the shared path at block 9) trains on mixed
    batches through mmengine's Runner; tools/test.py's path reports top-1, box mAP, mIoU and the
    T-Score in one run."""
    from automtl.mm.runner import test_mm, train_mm
    from search_spaces.vit_mvt import load_subnet, save_subnet

    genes = load_subnet(T_SUBNET)
    genes.update({f"share.{i}.{lin}.seg": "specific" for i in range(9, 14) for lin in ("qkv", "proj", "fc1", "fc2")})
    save_subnet(genes, tmp_path / "sharing.yaml")
    config = _small(tmp_path, MERGED_CONFIG)
    options = [*_roots(tiny_sets), f"model.backbone.subnet={tmp_path / 'sharing.yaml'}"]
    work = str(tmp_path / "work")
    out = train_mm(config, work_dir=work, cfg_options=options)
    assert out["checkpoint"] and Path(out["checkpoint"]).is_file()
    state = torch.load(out["checkpoint"], map_location="cpu")["state_dict"]
    assert "backbone.blocks.9.fc1.seg.weight" in state and "backbone.blocks.8.fc1.seg.weight" not in state
    metrics = test_mm(config, out["checkpoint"], work_dir=work, evals=["accuracy", "bbox", "mIoU"],
                      cfg_options=options)
    for key in ("accuracy/top1", "coco/bbox_mAP", "mIoU", "T-Score"):
        assert key in metrics and math.isfinite(metrics[key]), (key, metrics)
    assert metrics["T-Score"] == pytest.approx(metrics["accuracy/top1"] + 100 * metrics["coco/bbox_mAP"]
                                               + metrics["mIoU"])
    seg_only = test_mm(config, out["checkpoint"], work_dir=work, evals=["mIoU"], cfg_options=options)
    assert "mIoU" in seg_only and "accuracy/top1" not in seg_only and "T-Score" not in seg_only


def test_learned_sharing_trains_on_a_mixed_batch(model, small_config, tiny_sets) -> None:
    """One optimiser step of the shipped model (learned sharing scores) on a real mixed batch
    from the config's loader: one loss dict with every task's losses, scores in the graph."""
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner

    from automtl.mm.runner import load_mm_config

    cfg = load_mm_config(small_config, _roots(tiny_sets))
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batch = next(iter(loader))
    assert [s.task for s in batch["data_samples"]] == ["cls", "det", "seg", "seg"]
    qkv = model.backbone.supernet.block(0).qkv
    with torch.no_grad():  # task weights apart from the shared one: the scores get a gradient
        for t in ("cls", "det", "seg"):
            qkv.task_weight[t].add_(0.05 * torch.randn_like(qkv.task_weight[t]))
    before = {t: qkv.score[t].detach().item() for t in ("cls", "det", "seg")}
    model.train()
    try:
        optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1.0))
        log = model.train_step(batch, optim)
    finally:
        model.eval()
    for key in ("loss", "cls.loss", "det.loss_rpn_cls", "det.loss_mask", "seg.decode.loss_ce", "seg.aux.loss_ce"):
        assert key in log and math.isfinite(float(torch.as_tensor(log[key]).detach())), (key, log)
    assert all(qkv.score[t].detach().item() != before[t] for t in before), before  # every task's score learned


def test_shared_blocks_run_once_for_all_tasks(model) -> None:
    """predict_all: one image through the three tasks; a block every task shares runs once,
    and each task's maps equal what it computes alone. (det adds its own conv aggregation after
    blocks 2, 5, 9, 13, as ViT-MVT's detection networks: from block 3 on it runs its own path.)"""
    backbone = model.backbone
    calls = []
    hooks = [b.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, b in
             enumerate(backbone.supernet.blocks)]
    try:
        x = torch.randn(1, 3, 64, 64)
        depth = backbone.depth
        with torch.no_grad():
            preds = model.predict_all(x)
            assert sorted(calls) == sorted([*range(depth), *range(3, depth)])  # cls + seg share all blocks
            assert set(preds) == {"cls", "det", "seg"}
            assert preds["seg"][0].pred_sem_seg.data.shape[-2:] == (64, 64)
            assert "bboxes" in preds["det"][0].pred_instances and preds["cls"][0].pred_score.shape == (3,)
            lin = backbone.supernet.block(9).fc1
            lin.score["seg"].fill_(0.0)  # seg leaves the shared path at block 9
            calls.clear()
            together = backbone.forward_all(x)
            assert sorted(calls) == sorted([*range(depth), *range(3, depth), *range(9, depth)])
            for t in ("cls", "det", "seg"):
                alone = backbone(x, t)
                assert all(torch.equal(a, b) for a, b in zip(alone, together[t])), t
            lin.score["seg"].fill_(1.0)
    finally:
        for h in hooks:
            h.remove()


def test_losses_prefixed_with_auxiliary_losses() -> None:
    """Task losses come back prefixed by task; a backbone's auxiliary_losses() join the task
    whose forward produced them."""
    from mmpretrain.structures import DataSample

    from automtl.mm.compact_backbone import ViTMVTMultiTaskBackbone
    from automtl.mm.multitask import MMMultiTaskModel

    class Balanced(ViTMVTMultiTaskBackbone):
        def forward_all(self, x, tasks=None):
            out = super().forward_all(x, tasks)
            self.last = {"balance_loss": out[self.tasks[0]][-1].pow(2).mean()}
            return out

        def auxiliary_losses(self):
            return getattr(self, "last", {})

    head = dict(type="ImageClassifier", neck=dict(type="GlobalAveragePooling"),
                head=dict(type="LinearClsHead", num_classes=3, in_channels=216, loss=dict(type="CrossEntropyLoss")))
    model = MMMultiTaskModel(backbone=Balanced(T_SUBNET, tasks=("cls",)), tasks=dict(cls=head))
    losses = model.loss({"cls": torch.randn(2, 3, 32, 32)},
                        {"cls": [DataSample().set_gt_label(0), DataSample().set_gt_label(2)]})
    assert sorted(losses) == ["cls.aux_loss.balance_loss", "cls.loss"]
    total, _ = model.parse_losses(losses)
    total.backward()
    assert model.backbone.blocks[0].qkv.shared.weight.grad is not None


def test_mixed_batches_hold_each_tasks_share() -> None:
    from mmengine.dataset import InfiniteSampler

    from automtl.mm.mixed_data import MultiTaskBatchSampler, MultiTaskDataset

    ds = MultiTaskDataset({"cls": list(range(7)), "det": list(range(3)), "seg": list(range(2))})
    assert ds.locate(8) == ("det", 1) and len(ds) == 12
    batches = MultiTaskBatchSampler(InfiniteSampler(ds, seed=0), batch_size=4, shares={"cls": 2, "det": 1, "seg": 1})
    it = iter(batches)
    for _ in range(5):
        batch = next(it)
        assert [ds.task_of(i) for i in batch] == ["cls", "cls", "det", "seg"]
    with pytest.raises(ConfigError, match="add up to 3, not the batch size 4"):
        MultiTaskBatchSampler(InfiniteSampler(ds, seed=0), batch_size=4, shares={"cls": 1, "det": 1, "seg": 1})
    with pytest.raises(ConfigError, match="exactly the dataset's tasks"):
        MultiTaskBatchSampler(InfiniteSampler(ds, seed=0), batch_size=4, shares={"cls": 3, "dep": 1})
    with pytest.raises(ConfigError, match="no OpenMMLab scope for task 'depth'"):
        MultiTaskDataset({"depth": [1]})
    with pytest.raises(DataError, match="holds no sample"):
        MultiTaskDataset({"cls": [], "seg": [1]})


def test_metric_routes_by_task_and_scores() -> None:
    from automtl.mm.mt_metric import MultiTaskMetric, t_score

    assert t_score({"accuracy/top1": 70.0, "coco/bbox_mAP": 0.4, "mIoU": 40.0}) == pytest.approx(150.0)
    assert t_score({"accuracy/top1": 70.0, "mIoU": 40.0}) is None
    metric = MultiTaskMetric(metrics=dict(cls=dict(type="Accuracy", topk=(1,))))
    scores = torch.tensor([0.1, 0.7, 0.2])
    samples = [{"task": "cls", "multitask_index": i, "pred_score": scores, "pred_label": torch.tensor([1]),
                "gt_label": torch.tensor([i % 2])} for i in range(4)]
    samples.append({"task": "seg", "multitask_index": 9})  # no seg metric: passed over
    metric.process({}, samples[:3] + samples[4:])
    metric.process({}, samples[1:4])  # index 1 and 2 again (a sampler's padding): counted once
    out = metric.evaluate(5)
    assert out == {"accuracy/top1": pytest.approx(50.0)}
    with pytest.raises(ConfigError, match="must map each task"):
        MultiTaskMetric(metrics={})


def test_automtl_branched_backbone_serves_every_task() -> None:
    """The AutoMTL variant: one compiled branched model for cls and seg under a policy; each
    task's maps equal the supernet's under that policy, each shared layer held (and run) once."""
    from torch import nn

    from automtl.mm.branched_backbone import AutoMTLMultiTaskBackbone
    from automtl.mm.multitask import MMMultiTaskModel
    from automtl.supernet import MTLModel, Policy

    def net() -> nn.Module:
        layers = []
        for cin, cout in ((3, 8), (8, 16), (16, 32)):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        return nn.Sequential(*layers)

    torch.manual_seed(0)
    supernet = MTLModel(net(), {"cls": nn.Identity(), "seg": nn.Identity()}, input_shape=(1, 3, 32, 32)).eval()
    policy = Policy.random(supernet, seed=3, skip=False)
    backbone = AutoMTLMultiTaskBackbone(net(), policy.to_dict(), out_indices=(0, 1, 2), input_shape=(1, 3, 32, 32))
    backbone.branched.load_state_dict(backbone._compile(supernet, policy).state_dict())  # the supernet's weights
    assert sum(p.numel() for p in backbone.parameters()) == supernet.count_params(policy)["total"]
    backbone.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = backbone.forward_all(x)
        want = supernet.features_all(x, policy)
    for t in ("cls", "seg"):  # the last level is the supernet's own output
        assert [m.shape[1] for m in got[t]] == [8, 16, 32]
        torch.testing.assert_close(got[t][-1], want[t], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="not the policy's tasks"):
        AutoMTLMultiTaskBackbone(net(), policy.to_dict(), tasks=("det",), input_shape=(1, 3, 32, 32))
    seg = dict(type="EncoderDecoder", decode_head=dict(
        type="FCNHead", in_channels=32, in_index=2, channels=8, num_convs=1, num_classes=4,
        norm_cfg=dict(type="BN"), loss_decode=dict(type="CrossEntropyLoss")), test_cfg=dict(mode="whole"))
    cls = dict(type="ImageClassifier", neck=dict(type="GlobalAveragePooling"),
               head=dict(type="LinearClsHead", num_classes=3, in_channels=32))
    model = MMMultiTaskModel(backbone=backbone, tasks=dict(cls=cls, seg=seg)).eval()
    with torch.no_grad():
        preds = model.predict_all(x)
    assert preds["seg"][0].pred_sem_seg.data.shape[-2:] == (32, 32) and preds["cls"][0].pred_score.shape == (3,)


def test_trained_model_merges_into_the_deployed_config(model, tmp_path) -> None:
    """A checkpoint of the shipped model (learned scores; seg leaves the shared weights at blocks
    4 and 10) → tools/merge_checkpoints.py → the deployed config loads it (every key and shape
    checked) and predicts exactly what the trained model predicts, in fewer bytes."""
    import copy

    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    from automtl.io import atomic_save
    from automtl.mm.merge import merge_checkpoints
    from automtl.mm.runner import load_weights

    trained = copy.deepcopy(model).eval()
    with torch.no_grad():
        for i in (4, 10):
            for lin in trained.backbone.supernet.block(i).linears().values():
                lin.task_weight["seg"].add_(0.05)
                lin.score["seg"].fill_(0.1)
    ckpt = atomic_save({"state_dict": trained.state_dict()}, tmp_path / "mtl.pth")
    report = merge_checkpoints({t: ckpt for t in ("cls", "det", "seg")}, tmp_path / "merged.pth", subnet=T_SUBNET)
    assert report.bytes_after < report.bytes_before / 3 and report.specific_linears == 8
    assert report.aggregation == {"det": [2, 5, 9, 13]}
    cfg = Config.fromfile(_small(tmp_path, MERGED_CONFIG))
    cfg.model.backbone.subnet = report.subnet_yaml
    with DefaultScope.overwrite_default_scope("mmdet"):
        deployed = MODELS.build(cfg.model).eval()
    load_weights(deployed, report.out)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want, got = trained.predict_all(x), deployed.predict_all(x)
    assert torch.equal(want["cls"][0].pred_score, got["cls"][0].pred_score)
    assert torch.equal(want["seg"][0].pred_sem_seg.data, got["seg"][0].pred_sem_seg.data)
    assert torch.equal(want["det"][0].pred_instances.bboxes, got["det"][0].pred_instances.bboxes)
