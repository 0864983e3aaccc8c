"""Export a torchvision backbone (or whole model) as a Caffe prototxt through the automtl graph IR.

Examples:
    python tools/export_prototxt.py deeplab_resnet34 -o prototxt/deeplab_resnet34.prototxt
    python tools/export_prototxt.py mobilenet_v2 --dialect caffe -o mbv2_caffe.prototxt
    python tools/export_prototxt.py resnet18 --full --input-size 224 -o resnet18_full.prototxt
"""
from __future__ import annotations

import argparse
import sys

import torch


def build_parser() -> argparse.ArgumentParser:
    from automtl.graph.zoo import BACKBONES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"backbone name ({', '.join(BACKBONES)}), or any torchvision model with --full")
    parser.add_argument("-o", "--output", help="prototxt file to write (default: print to stdout)")
    parser.add_argument("--dialect", choices=("automtl", "caffe"), default="automtl",
                        help="AutoMTL dialect (BN carries its affine) or stock BVLC Caffe (BatchNorm + Scale)")
    parser.add_argument("--full", action="store_true", help="export the whole classification model, not the backbone")
    parser.add_argument("--input-size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--batch", type=int, default=1, help="batch size written in input_dim (default 1)")
    parser.add_argument("--name", dest="net_name", help="network name written in the file (default: NAME)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from automtl.errors import AutoMTLError
    from automtl.graph import from_module, to_prototxt
    from automtl.graph.zoo import torchvision_model

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
              f"output {list(graph.output_shape)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
