"""What running 3-D convolutions over inputs 2 deep in float32 costs under CPU bfloat16
(``tasks/train/precision.py::keep_float32_where_bfloat16_fails``): the speed probe's seconds per step
(``measure_seconds_per_step``: the loop's step, arithmetic and layout, readied by ``for_steps``) with the guard and without it,
alternating, on one thread; and which layers it keeps in float32.

Usage: python benchmarks/bfloat16_guard.py [--arch resnet18_small] [--size 28] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from tasks.model.architectures import build_model
from tasks.train import planning, precision
from tasks.train.precision import in_layout, keep_float32_where_bfloat16_fails


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnet18_small")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    kept = keep_float32_where_bfloat16_fails(in_layout(build_model(args.arch, 2, args.size, 3)), torch.bfloat16, args.size, 3)
    print(f"{args.arch} 3-D at {args.size} px: {len(kept)} layer(s) kept float32: {', '.join(kept) or '-'}")
    seconds: dict[str, list[float]] = {"guard": [], "no guard": []}
    for _ in range(args.repeats):
        for name in seconds:
            precision.keep_float32_where_bfloat16_fails = keep_float32_where_bfloat16_fails if name == "guard" \
                else (lambda *_, **__: [])  # what for_steps calls, for the speed probe as for the loop
            seconds[name].append(planning.measure_seconds_per_step(args.arch, args.size, args.batch, 2, steps=5, dims=3,
                                                                   precision="bfloat16"))
    for name, values in seconds.items():
        print(f"{name:>9}: median {statistics.median(values):.3f} s/step ({', '.join(f'{v:.3f}' for v in values)})")
    print(f"guard / no guard: {statistics.median(seconds['guard']) / statistics.median(seconds['no guard']):.2f}x")


if __name__ == "__main__":
    main()
