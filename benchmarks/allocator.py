"""The training malloc settings (``tasks/train/allocator.py``) beside glibc's defaults: seconds per
optimizer step, and the peak resident memory, of the speed probe (``measure_seconds_per_step``: the training loop's step, its
arithmetic and layout) for each network, run in a thread other than the main one as Ray Train runs
the loop, on one core. Each measurement is a fresh process (malloc reads its settings at start);
the two settings alternate, ``--repeats`` times, and the medians are compared.

Usage: python benchmarks/allocator.py [--repeats 3] [--batch 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [("resnet18_small", 3), ("seed_cnn", 3), ("resnet18_small", 2), ("seed_cnn", 2)]
PROBE = """
import json, resource, sys, threading, torch
from tasks.train.planning import measure_seconds_per_step
torch.set_num_threads({threads})
out = []
thread = threading.Thread(target=lambda: out.append(measure_seconds_per_step({arch!r}, 28, {batch}, 2, steps=6,
                                                                              dims={dims})))
thread.start(); thread.join()
print(json.dumps([out[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))
"""


def seconds_per_step(arch: str, dims: int, batch: int, threads: int, env: dict[str, str]) -> tuple[float, float]:
    """Seconds per step and the peak resident memory (MB) of a process started with ``env``."""
    code = PROBE.format(arch=arch, dims=dims, batch=batch, threads=threads)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    seconds, peak_mb = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, peak_mb


def main() -> None:
    sys.path.insert(0, ROOT)
    from tasks.train.allocator import TRAINING_MALLOC

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    plain = {k: v for k, v in os.environ.items() if k not in TRAINING_MALLOC}  # glibc's defaults
    print(f"settings: {TRAINING_MALLOC}; batch {args.batch}, {args.threads} thread(s), 28 px, medians of "
          f"{args.repeats}")
    print(f"{'network':<20}{'s/step: glibc default':>22}{'training malloc':>17}{'speed-up':>10}"
          f"{'peak MB: default':>18}{'training':>10}")
    for arch, dims in CASES:
        runs: dict[str, list[tuple[float, float]]] = {"default": [], "training": []}
        for _ in range(args.repeats):
            runs["default"].append(seconds_per_step(arch, dims, args.batch, args.threads, plain))
            runs["training"].append(seconds_per_step(arch, dims, args.batch, args.threads,
                                                     {**plain, **TRAINING_MALLOC}))
        (default, default_mb), (training, training_mb) = (
            (statistics.median(s for s, _ in runs[k]), statistics.median(m for _, m in runs[k])) for k in runs)
        print(f"{arch + f' {dims}-D':<20}{default:>22.3f}{training:>17.3f}{default / training:>9.2f}x"
              f"{default_mb:>18.0f}{training_mb:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
