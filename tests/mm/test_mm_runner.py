"""tools/train.py and tools/test.py on an OpenMMLab config: train, resume, test with --eval, and
every kind of bad input a clear error (the runner itself, on a tiny mmpretrain classifier)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from automtl.__main__ import main
from automtl.errors import ConfigError

CLASSIFIER = """
default_scope = "mmpretrain"
custom_imports = dict(imports=["automtl.mm.register"], allow_failed_imports=False)
data_root = "data/imagenet/"
classes = ("sphere", "box", "cylinder")
model = dict(type="ImageClassifier",
             backbone=dict(type="{backbone}", depth=18, base_channels={width}, stem_channels={width}),
             neck=dict(type="GlobalAveragePooling"),
             head=dict(type="LinearClsHead", num_classes=3, in_channels={width} * 8,
                       loss=dict(type="CrossEntropyLoss"), topk=(1,)),
             data_preprocessor=dict(num_classes=3, mean=[123.7, 116.3, 103.5], std=[58.4, 57.1, 57.4],
                                    to_rgb=True))
pipeline = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=32), dict(type="PackInputs")]
def _loader(split, shuffle):
    return dict(batch_size=4, num_workers=0,
                sampler=dict(type="DefaultSampler", shuffle=shuffle),
                dataset=dict(type="CustomDataset", data_root=data_root, data_prefix=split,
                             ann_file="meta/" + split + ".txt", metainfo=dict(classes=classes),
                             pipeline=pipeline))
train_dataloader = _loader("train", True)
val_dataloader = _loader("val", False)
test_dataloader = val_dataloader
val_evaluator = dict(type="Accuracy", topk=(1,))
test_evaluator = val_evaluator
train_cfg = dict(by_epoch=False, max_iters=4, val_interval=4)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9))
default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False),
                     logger=dict(type="LoggerHook", interval=1))
randomness = dict(seed=0)
"""


def _config(tmp_path: Path, *, backbone: str = "ResNet", width: int = 8, name: str = "cls.py") -> str:
    text = CLASSIFIER.replace("{backbone}", backbone).replace("{width}", str(width))
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sets):
    """A classifier trained 4 iterations, then resumed to 6 (work dir, config, root)."""
    tmp = tmp_path_factory.mktemp("mm_runner")
    cfg = _config(tmp)
    work = str(tmp / "work")
    root = f"data_root={tiny_sets['imagenet']}/"
    assert main(["train", cfg, "--work-dir", work, "--cfg-options", root]) == 0
    assert (Path(work) / "iter_4.pth").is_file()
    assert main(["train", cfg, "--work-dir", work, "--resume",
                 "--cfg-options", root, "train_cfg.max_iters=6"]) == 0
    return work, cfg, root


def test_train_resume_and_test_with_eval(trained, capsys, tmp_path):
    work, cfg, root = trained
    ckpt = torch.load(Path(work) / "iter_6.pth", map_location="cpu")  # weights-only, allow-listed
    assert ckpt["meta"]["iter"] == 6
    scalars = ckpt["message_hub"]["log_scalars"]
    assert len(scalars["train/loss"].data[0]) == 6  # 4 iterations, then 2 more after the resume
    out = tmp_path / "metrics.json"
    code, text, err = _run(capsys, "test", cfg, str(Path(work) / "iter_6.pth"), "--work-dir", work,
                           "--eval", "accuracy", "--out", str(out), "--cfg-options", root)
    assert code == 0, err
    metrics = json.loads(text[text.rindex("\n{\n"):])  # the JSON the command prints last
    assert 0.0 <= metrics["accuracy/top1"] <= 100.0
    assert json.loads(out.read_text()) == metrics


def test_predictions_dump_to_a_pickle(trained, capsys, tmp_path):
    work, cfg, root = trained
    pkl = tmp_path / "preds.pkl"
    code, _, err = _run(capsys, "test", cfg, str(Path(work) / "iter_6.pth"), "--work-dir", work,
                        "--out", str(pkl), "--cfg-options", root)
    assert code == 0, err
    assert pkl.is_file() and pkl.stat().st_size > 0


def test_unknown_eval_metric_is_refused(trained, capsys):
    work, cfg, root = trained
    code, _, err = _run(capsys, "test", cfg, str(Path(work) / "iter_6.pth"), "--work-dir", work,
                        "--eval", "top5", "--cfg-options", root)
    assert code == 2 and "top5" in err and "mIoU" in err


def test_checkpoint_of_another_model_names_the_shapes(trained, capsys, tmp_path):
    work, _, root = trained
    wide = _config(tmp_path, width=16, name="wide.py")
    code, _, err = _run(capsys, "test", wide, str(Path(work) / "iter_6.pth"), "--work-dir", str(tmp_path),
                        "--cfg-options", root)
    assert code == 2 and "does not fit the model" in err and "shapes differ" in err


def test_dataset_in_the_wrong_layout_names_the_missing_path(tiny_sets, capsys, tmp_path):
    cfg = _config(tmp_path)
    code, _, err = _run(capsys, "train", cfg, "--work-dir", str(tmp_path / "w"),
                        "--cfg-options", f"data_root={tiny_sets['coco']}/")
    assert code == 2 and "DataError" in err and "meta/train.txt" in err


def test_unknown_backbone_type_names_the_registered_parts(tiny_sets, capsys, tmp_path):
    cfg = _config(tmp_path, backbone="NoSuchBackbone")
    code, _, err = _run(capsys, "train", cfg, "--work-dir", str(tmp_path / "w"),
                        "--cfg-options", f"data_root={tiny_sets['imagenet']}/")
    assert code == 2 and "NoSuchBackbone" in err and "ViTMVTSubnetBackbone" in err


def test_data_root_override_retargets_every_path(tmp_path):
    from automtl.mm.runner import load_mm_config

    cfg = load_mm_config(_config(tmp_path), ["data_root=/elsewhere"])  # the slash is kept
    assert cfg.train_dataloader.dataset.data_root == "/elsewhere/"
    assert cfg.test_dataloader.dataset.data_root == "/elsewhere/"
    with pytest.raises(ConfigError, match="data root"):
        load_mm_config(_config(tmp_path), ["det_data_root=/x/"])


def test_eval_names_map_onto_evaluators_and_multitask_entries():
    from automtl.mm.runner import eval_evaluator

    cfg = {"test_evaluator": {"type": "Accuracy"},
           "test_dataloader": {"dataset": {"data_root": "d/", "ann_file": "annotations/x.json"}}}
    coco = eval_evaluator(cfg, ["bbox", "segm"])
    assert coco["metric"] == ["bbox", "segm"] and coco["ann_file"] == "d/annotations/x.json"
    both = eval_evaluator(cfg, ["accuracy", "mIoU"])
    assert [m["type"] for m in both] == ["mmpretrain.Accuracy", "mmseg.IoUMetric"]
    multi = {"test_evaluator": {"type": "MultiTaskMetric",
                                "metrics": {"cls": {"type": "Accuracy"}, "det": {"type": "CocoMetric"},
                                            "seg": {"type": "IoUMetric"}}}}
    assert sorted(eval_evaluator(multi, ["mIoU", "accuracy"])["metrics"]) == ["cls", "seg"]


def test_checkpoints_are_written_through_the_atomic_writer(tmp_path, monkeypatch):
    from mmengine.fileio import get_file_backend
    from mmengine.runner.checkpoint import save_checkpoint

    import automtl.io
    from automtl.mm.runner import _install_io

    _install_io()
    calls = []
    real = automtl.io.atomic_write_bytes
    monkeypatch.setattr(automtl.io, "atomic_write_bytes", lambda p, b: (calls.append(str(p)), real(p, b)))
    assert type(get_file_backend(str(tmp_path / "x.pth"))).__name__ == "AtomicLocalBackend"
    save_checkpoint({"state_dict": {"w": torch.ones(1)}}, str(tmp_path / "x.pth"))
    assert calls == [str(tmp_path / "x.pth")] and torch.load(tmp_path / "x.pth")["state_dict"]["w"] == 1


@pytest.mark.slow
def test_two_processes_with_launcher_pytorch(tiny_sets, tmp_path):
    import os
    import subprocess
    import sys

    cfg = _config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29531", "-m", "automtl", "train", cfg, "--launcher", "pytorch",
                           "--work-dir", str(tmp_path / "w"), "--cfg-options",
                           f"data_root={tiny_sets['imagenet']}/", "train_cfg.max_iters=2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "w" / "iter_2.pth").is_file()
    assert "world_size: 2" in proc.stdout + proc.stderr or "Distributed launcher: pytorch" in proc.stdout + proc.stderr
