#!/usr/bin/env python
"""Write tiny ImageNet-folder, COCO-json and ADE20K-layout sets from the synthetic scenes.

Every OpenMMLab config under configs/nas/ and configs/mtl/ runs end to end on them:

    python tools/make_tiny_datasets.py data/tiny --n-train 16 --n-val 8 --size 128
    python tools/train.py configs/nas/vit_mvt_tiny/task_det.py --cfg-options data_root=data/tiny/coco/
"""
import argparse
import json
import sys

from automtl.mm.tiny_sets import make_tiny_datasets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output folder (gets imagenet/, coco/, ade20k/)")
    parser.add_argument("--n-train", type=int, default=8, help="training images per set")
    parser.add_argument("--n-val", type=int, default=4, help="validation images per set")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="scene seed")
    args = parser.parse_args(argv)
    roots = make_tiny_datasets(args.root, n_train=args.n_train, n_val=args.n_val, size=args.size, seed=args.seed)
    print(json.dumps({k: str(v) for k, v in roots.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
