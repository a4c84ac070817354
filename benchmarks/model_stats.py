"""Parameter counts and FLOPs of the SGHRQ presets per patch (no weights, no timing).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the ``meta`` device
(shapes only, nothing is computed), so the figures do not depend on the machine. The counter
counts convolutions, matmuls/einsum and similar (2 FLOPs per multiply-add); element-wise ops,
BN, interpolation and pooling are not counted.

    python benchmarks/model_stats.py                      # paper + lite at 1280x1280
    python benchmarks/model_stats.py --patch 1024 --presets lite
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from uhr_seg_ros.model import SGHRQConfig, build_model

#: Top-level parts of the inference graph, in data-flow order.
PARTS = ("semantic", "aspp", "pyramid", "shallow", "aux8_head", "aux16_head", "memory", "query")


def gflops_by_part(preset: str, num_classes: int, patch: int) -> tuple[float, dict[str, float]]:
    """Total inference GFLOPs for one ``patch x patch`` patch, and the split per part."""
    model = build_model(getattr(SGHRQConfig, preset)(num_classes)).eval().to("meta")
    x = torch.empty(1, 3, patch, patch, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    counts = counter.get_flop_counts()
    parts = {p: sum(counts.get(f"SGHRQ.{p}", {}).values()) / 1e9 for p in PARTS}
    return counter.get_total_flops() / 1e9, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="+", default=["paper", "lite"], choices=["paper", "lite", "tiny"]
    )
    parser.add_argument("--patch", type=int, default=1280, help="patch side in pixels")
    parser.add_argument("--num-classes", type=int, default=6)
    args = parser.parse_args()

    print(
        f"| preset | params (inference) | params (training heads) | GFLOPs / {args.patch}² patch "
        "| " + " | ".join(PARTS) + " |"
    )
    print("|---" * (4 + len(PARTS)) + "|")
    for preset in args.presets:
        counts = build_model(getattr(SGHRQConfig, preset)(args.num_classes)).parameter_counts()
        total, parts = gflops_by_part(preset, args.num_classes, args.patch)
        print(
            f"| {preset} | {counts['inference'] / 1e6:.2f} M | "
            f"{counts['training_heads'] / 1e6:.3f} M | {total:.1f} | "
            + " | ".join(f"{parts[p]:.2f}" for p in PARTS)
            + " |"
        )


if __name__ == "__main__":
    main()
