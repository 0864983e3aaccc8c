"""Export a torchvision backbone (or whole model) as a Caffe prototxt through the automtl graph IR.

Examples:
    python -m automtl export deeplab_resnet34 -o prototxt/deeplab_resnet34.prototxt
    python -m automtl export mobilenet_v2 --dialect caffe -o mbv2_caffe.prototxt
    python -m automtl export resnet18 --full --input-size 224 -o resnet18_full.prototxt
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m automtl export``."""
    from automtl.backbones._zoo import ZOO

    parser.add_argument("name", help=f"backbone name ({', '.join(ZOO)}), or any torchvision model with --full")
    parser.add_argument("-o", "--output", help="prototxt file to write (default: print to stdout)")
    parser.add_argument("--dialect", choices=("automtl", "caffe"), default="automtl",
                        help="AutoMTL dialect (BN carries its affine) or stock BVLC Caffe (BatchNorm + Scale)")
    parser.add_argument("--full", action="store_true", help="export the whole classification model, not the backbone")
    parser.add_argument("--input-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--batch", type=int, default=1, help="batch size written in input_dim (default 1)")
    parser.add_argument("--name", dest="net_name", help="network name written in the file (default: NAME)")


def run(args: argparse.Namespace) -> int:
    """Export the model and report what was written."""
    import torch

    from automtl.backbones import torchvision_model
    from automtl.errors import AutoMTLError
    from automtl.graph import from_module, to_prototxt

    try:
        model = torchvision_model(args.name, full=args.full).eval()
        graph = from_module(model, torch.zeros(args.batch, 3, args.input_size, args.input_size),
                            name=args.net_name or args.name, input_names=["data"])
        text = to_prototxt(graph, args.output, dialect=args.dialect)
    except AutoMTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        print(f"wrote {args.output}: {len(graph)} layers, {graph.param_count():,} parameters, "
              f"output {graph.output_shape}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
