"""Backbone import cost: a ResNet-50 prototxt parsed and built vs torchvision's resnet50 built directly.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.bench_graph [--quick]``
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torchvision

from automtl.graph import from_module, load_prototxt, to_prototxt
from benchmarks._report import table, write_section


def _median(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 9")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 9
    torch.manual_seed(0)

    model = torchvision.models.resnet50(weights=None)
    graph = from_module(model, torch.zeros(1, 3, 224, 224), name="resnet50", input_names=["data"])
    with tempfile.TemporaryDirectory() as tmp:
        paths = {d: Path(tmp) / f"resnet50_{d}.prototxt" for d in ("automtl", "caffe")}
        for dialect, path in paths.items():
            to_prototxt(graph, path, dialect=dialect)
        n_layers = sum(1 for n in load_prototxt(paths["automtl"]) if n.op != "input")

        t_tv = _median(lambda: torchvision.models.resnet50(weights=None), repeat)
        rows = [["torchvision `resnet50(weights=None)` (reference)", "", f"{t_tv * 1000:.0f}",
                 f"{t_tv * 1000:.0f}", "1.00"]]
        for dialect, path in paths.items():
            t_load = _median(partial(load_prototxt, path), repeat)
            loaded = load_prototxt(path)
            t_build = _median(loaded.to_module, repeat)
            total = t_load + t_build
            rows.append([f"prototxt ({dialect} dialect) → Graph → module", f"{t_load * 1000:.0f}",
                         f"{t_build * 1000:.0f}", f"{total * 1000:.0f}", f"{total / t_tv:.2f}"])
        t_fx = _median(lambda: from_module(model, torch.zeros(1, 3, 224, 224)), repeat)
        t_fx_build = _median(graph.to_module, repeat)
        rows.append(["torch.fx `from_module(resnet50)` → module", f"{t_fx * 1000:.0f}", f"{t_fx_build * 1000:.0f}",
                     f"{(t_fx + t_fx_build) * 1000:.0f}", f"{(t_fx + t_fx_build) / t_tv:.2f}"])

    body = (f"ResNet-50 ({n_layers} graph layers, {graph.param_count():,} parameters), input 1×3×224×224, CPU, "
            f"median of {repeat} runs after a warm-up. *Import* parses the text and infers every shape "
            "(meta tensors); *build* allocates and initialises the weights (the same work torchvision does). "
            "`from_module` runs the model once on the example input to record shapes.\n\n"
            + table(["path", "import ms", "build ms", "total ms", "ratio vs torchvision"], rows)
            + "\n\nTarget: importing stays well under a second for ResNet-50.")
    print(body)
    write_section("graph", "Graph import: prototxt and torch.fx vs building torchvision directly", body,
                  "OMP_NUM_THREADS=1 python -m benchmarks.bench_graph" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
