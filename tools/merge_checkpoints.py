#!/usr/bin/env python
"""Merge per-task ViT-MVT checkpoints into one multi-task checkpoint by the sharing scores
(thin wrapper of ``automtl.mm.merge.main``; ``--help`` lists the options).

Examples:
    python tools/merge_checkpoints.py cls=work_dirs/cls/iter_1000.pth det=work_dirs/det/iter_1000.pth \
        seg=work_dirs/seg/iter_1000.pth --sharing work_dirs/mtl_t/iter_160000.pth -o work_dirs/merged.pth
    python tools/merge_checkpoints.py cls=M.pth det=M.pth seg=M.pth --subnet configs/nas/vit_mvt_tiny/subnet.yaml \
        -o work_dirs/mtl_t_merged/merged.pth     # M.pth: a trained configs/mtl/vit_mvt_tiny_cls_det_seg.py model
"""
import sys

from automtl.mm.merge import main

if __name__ == "__main__":
    sys.exit(main())
