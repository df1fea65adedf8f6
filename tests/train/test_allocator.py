"""The training malloc settings reach a Ray worker's process and do what they are there for: a
large block allocated in a thread other than the main one (where Ray Train runs the loop) comes
from the heap, not from an mmap of its own that is faulted in anew at every step."""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import ray

from tasks.train.allocator import TRAINING_MALLOC, training_env, training_runtime_env

BLOCK = 96 << 20  # bytes: above glibc's largest mmap threshold (32 MB) and a thread arena's heap (64 MB)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


@ray.remote(num_cpus=1)
def _mapped_bytes_of_a_block_in_a_thread() -> int:
    """Bytes glibc holds in mmapped blocks while a thread holds a ``BLOCK``-sized array."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    seen: list[int] = []

    def allocate() -> None:
        block = np.ones(BLOCK, dtype=np.uint8)
        seen.append(libc.mallinfo2().hblkhd)
        del block

    thread = threading.Thread(target=allocate)
    thread.start()
    thread.join()
    return seen[0]


def test_the_settings_keep_a_threads_large_blocks_in_the_heap(ray_local):
    default = ray.get(_mapped_bytes_of_a_block_in_a_thread.remote())
    trained = ray.get(_mapped_bytes_of_a_block_in_a_thread.options(runtime_env=training_runtime_env()).remote())
    assert default >= BLOCK  # glibc's default: the block is an mmap of its own
    assert trained < BLOCK


def test_a_value_in_the_drivers_environment_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert training_env() == {**TRAINING_MALLOC, "MALLOC_ARENA_MAX": "4"}
