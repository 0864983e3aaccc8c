#!/usr/bin/env python
"""Export a torchvision backbone as a Caffe prototxt (thin wrapper of ``python -m automtl export``;
``--help`` lists the options).

Example:
    python tools/export_prototxt.py deeplab_resnet34 -o prototxt/deeplab_resnet34.prototxt
"""
import sys

from automtl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
