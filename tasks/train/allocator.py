"""glibc malloc settings for the processes that train members (Ray Train workers, the speed probes).

A training step allocates and frees the same large activation and gradient buffers every step (a
3-D batch's are tens of MB). By default glibc serves blocks over 32 MB with a fresh ``mmap`` and
unmaps them on ``free``, and a thread other than the main one (Ray Train runs the training loop in
one) allocates from an arena whose heaps stop at 64 MB, so those buffers are mapped anew, and every
page faulted in and zeroed, at every step. One arena, no ``mmap`` and a high trim threshold keep
the freed memory in the heap for the next step: a 3-D resnet18_small step on one core took
0.63 s against 0.79 s (``python benchmarks/allocator.py``). The settings are read when a process
starts, so they travel as the workers' environment; a value already in the driver's environment wins.
"""

from __future__ import annotations

import os

TRAINING_MALLOC = {
    "MALLOC_ARENA_MAX": "1",  # every thread allocates from the main arena, which grows without a size limit
    "MALLOC_MMAP_MAX_": "0",  # no block is served by its own mmap (each would be faulted in anew)
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),  # up to 1 GiB of freed heap kept for reuse, not handed back
}


def training_env() -> dict[str, str]:
    """The malloc settings a training process starts with: ``TRAINING_MALLOC``, where the driver's
    environment does not set them itself."""
    return {name: os.environ.get(name, value) for name, value in TRAINING_MALLOC.items()}


def training_runtime_env() -> dict:
    """A Ray ``runtime_env`` that starts its worker processes with ``training_env()`` (Ray merges its
    ``env_vars`` with the job's; the cluster's ``py_modules`` stay)."""
    return {"env_vars": training_env()}
