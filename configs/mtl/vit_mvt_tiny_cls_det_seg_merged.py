# The multi-task model of vit_mvt_tiny_cls_det_seg.py in its deployed form: the T subnet with
# FIXED sharing, every shared weight stored once (ViTMVTMultiTaskBackbone). This is what
# tools/merge_checkpoints.py writes, from three single-task checkpoints or from a trained
# vit_mvt_tiny_cls_det_seg.py checkpoint (learned scores > 0.5 → shared):
#
#   python tools/merge_checkpoints.py cls=work_dirs/mtl_t/iter_160000.pth det=work_dirs/mtl_t/iter_160000.pth \
#       seg=work_dirs/mtl_t/iter_160000.pth --subnet configs/nas/vit_mvt_tiny/subnet.yaml \
#       -o work_dirs/mtl_t_merged/merged.pth          # also writes merged.subnet.yaml (arch + sharing)
#   python tools/test.py configs/mtl/vit_mvt_tiny_cls_det_seg_merged.py work_dirs/mtl_t_merged/merged.pth \
#       --work-dir work_dirs/mtl_t_merged --eval accuracy bbox mIoU
#
# It trains too (fixed sharing; e.g. fine-tuning the merged model): tools/train.py with this config.
_base_ = ["./vit_mvt_tiny_cls_det_seg.py"]

merged_subnet = "work_dirs/mtl_t_merged/merged.subnet.yaml"  # architecture + sharing genes
model = dict(
    backbone=dict(
        _delete_=True,
        type="ViTMVTMultiTaskBackbone",
        subnet=merged_subnet,
        space="tiny",
        tasks=("cls", "det", "seg"),
        # as the single-task T configs (configs/nas/vit_mvt_tiny/task_*.py), so their checkpoints merge:
        # UPerNet reads blocks 2, 5, 9, 13; Mask R-CNN the last map without the final norm, after
        # ViT-MVT's detection conv aggregation blocks (det's own) following blocks 2, 5, 9, 13
        out_indices=dict(cls=(-1,), det=(-1,), seg=(2, 5, 9, 13)),
        final_norm=dict(cls=True, det=False, seg=True),
        aggregation=dict(det=(2, 5, 9, 13)),
        drop_path_rate=0.1,
    ),
)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={".pos": dict(decay_mult=0.0),
                                                     ".rel.table": dict(decay_mult=0.0)}))
# fixed sharing: every weight a task holds is used by it
model_wrapper_cfg = dict(type="MMDistributedDataParallel", find_unused_parameters=False)
