#!/usr/bin/env python
"""Train from a config (thin wrapper of ``python -m automtl train``; ``--help`` lists the options).

Examples:
    python tools/train.py configs/automtl/synthetic_tinyresnet.py --work-dir work_dirs/tiny
    python tools/train.py configs/automtl/nyuv2_deeplab_resnet34.py --cfg-options data.data_root=DIR
    python tools/train.py configs/supernet/vit_mvt_micro_synthetic.py   # then tools/search.py
"""
import sys

from automtl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
