"""The GPU path in one short run, without Ray or Prefect (a GPU machine that has a CUDA PyTorch and
the wheels of `benchmarks/gpu-wheels.txt`; see README, "On a GPU machine"):

1. throughput of the per-worker loop (`benchmarks/train.py --throughput`), 2-D and 3-D, in the default
   arithmetic (float16 autocast on CUDA) beside float32: images/s with the data loader and compute only;
2. `fit` on the device, 2-D and 3-D: the whole per-worker loop (loader workers, augmentation, AMP,
   EMA, validation checks), its seconds per epoch and validation AUC on a learnable synthetic corpus;
3. DDP: `fit` on two ranks of a torch.distributed process group (`ProcessGroup`, the class Ray Train's
   workers use) on one device. One GPU cannot hold two NCCL ranks, so the ranks use gloo there;
   the check is that both ranks end with the same weights and the same validation history.

On a CPU it runs the same parts, smaller (`--quick`), which is what the test does.

Usage: python benchmarks/gpu.py [--quick] [--parts throughput,fit,ddp]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
import traceback
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def corpus(n: int, size: int, dims: int, seed: int):
    """Noise, with a brighter centre in the positive class's images: learnable in a few epochs."""
    from tasks.data.samples import InMemory

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 160, (n, *(size,) * dims), dtype=np.uint8)
    centre = tuple(slice(size // 4, 3 * size // 4) for _ in range(dims))
    for i in np.flatnonzero(labels):
        images[i][centre] += 60
    return InMemory(images, labels)


def member_config(model: str, epochs: int, workers: int | None):
    from tasks.model.config import TrainConfig

    return TrainConfig(model=model, epochs=epochs, loader_workers=workers, seed=0)


def aucs(history: list[dict]) -> str:
    return ", ".join(f"{h['val_auc']:.3f}" for h in history)


def report_fit(title: str, result, seconds: float) -> None:
    epochs = [h["seconds"] for h in result.history]
    print(f"{title}: {len(result.epochs_run)} epochs in {seconds:.1f} s, stopped {result.stopped}, "
          f"precision {result.history[-1]['precision']}")
    print(f"  seconds per epoch (check included): {', '.join(f'{s:.2f}' for s in epochs)}")
    print(f"  val AUC per epoch: {aucs(result.history)}; kept {result.best_auc:.3f}")


def fit_part(device: torch.device, quick: bool) -> None:
    from tasks.train.loop import fit

    shapes = [("2-D", "resnet18_small", 64, 2, 2048), ("3-D", "resnet18_small", 28, 3, 1335)]
    for title, model, size, dims, n in shapes:
        if quick:
            n, size = 96, 16
        train, val = corpus(n, size, dims, 1), corpus(max(n // 4, 32), size, dims, 2)
        workers = 0 if quick else None  # None: the default (4 on a GPU)
        start = time.perf_counter()
        result = fit(member_config(model, 2 if quick else 4, workers), train, val, 2, device=device)
        report_fit(f"fit {title} {model} @ {size}px, {n} train / {len(val)} val, batch 32, "
                   f"{'default' if workers is None else workers} loader workers, "
                   f"{device.type}", result, time.perf_counter() - start)


def _rank(rank: int, world: int, port: int, device_type: str, n: int, size: int, epochs: int, out: str) -> None:
    """One DDP rank: ``fit`` through a ProcessGroup; writes its final weights and history to ``out``."""
    import torch.distributed as torch_dist

    from tasks.model.architectures import build_model
    from tasks.train.distributed import ProcessGroup
    from tasks.train.loop import fit

    torch.set_num_threads(1)
    device = torch.device("cuda", 0) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        dist = ProcessGroup(device)
        result = fit(member_config("resnet18_small", epochs, 0), corpus(n, size, 2, 1), corpus(n // 2, size, 2, 2), 2,
                     device=device, distributed=dist)
        # the kept parameters: equal on every rank only if DDP kept the replicas in step (each rank read
        # its own share); batch-norm statistics are each rank's own
        parameters = {name for name, _ in build_model("resnet18_small", 2, size).named_parameters()}
        kept = {k: v for k, v in result.best_state.items() if k in parameters}
        torch.save({"weights": kept, "history": result.history, "seen": dist.all_objects(rank),
                    "mean": dist.mean(float(rank))}, os.path.join(out, f"rank-{rank}.pt"))
    finally:
        torch_dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_fit(device_type: str, n: int = 512, size: int = 32, epochs: int = 2, world: int = 2) -> list[dict]:
    """``fit`` on ``world`` DDP ranks (gloo) on one device; each rank's result, in rank order."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_rank, args=(world, free_port(), device_type, n, size, epochs, out), nprocs=world, join=True)
        return [torch.load(os.path.join(out, f"rank-{r}.pt"), weights_only=False) for r in range(world)]


def ddp_part(device: torch.device, quick: bool) -> None:
    n, size, epochs = (128, 16, 2) if quick else (2048, 64, 3)
    start = time.perf_counter()
    ranks = ddp_fit(device.type, n, size, epochs)
    seconds = time.perf_counter() - start
    differ = max(float((a - b).abs().max()) for a, b in zip(ranks[0]["weights"].values(), ranks[1]["weights"].values(),
                                                            strict=True))
    same_history = [h["val_auc"] for h in ranks[0]["history"]] == [h["val_auc"] for h in ranks[1]["history"]]
    print(f"DDP fit: 2 ranks (gloo) on one {device.type} device, resnet18_small @ {size}px, {n} train, {epochs} epochs, "
          f"{seconds:.1f} s with start-up")
    print(f"  ranks' answers {ranks[0]['seen']}, mean of ranks {ranks[0]['mean']}; largest parameter difference between "
          f"ranks {differ:.3g}; same validation history: {same_history}")
    print(f"  val AUC per epoch: {aucs(ranks[0]['history'])}, "
          f"precision {ranks[0]['history'][-1]['precision']}")


def throughput_part(device: torch.device, quick: bool) -> None:
    from benchmarks.train import throughput

    configs = [("resnet18", 224, 2, 128, 30), ("resnet18_small", 28, 3, 32, 40), ("resnet18", 64, 3, 16, 20)]
    if quick:
        configs = [("resnet18_small", 16, 2, 8, 2), ("resnet18_small", 8, 3, 4, 2)]
    for model, size, dims, batch, steps in configs:
        rates = {}
        for precision in ("auto", "float32"):
            args = SimpleNamespace(model=model, size=size, dims=dims, batch=batch, steps=steps, precision=precision,
                                   loader_workers=0 if quick else 12, threads=2 if quick else 8)
            rates[precision] = throughput(args)
        print(f"  default arithmetic / float32: {rates['auto']['compute'] / rates['float32']['compute']:.2f}x compute only, "
              f"{rates['auto']['loader'] / rates['float32']['loader']:.2f}x with the loader\n")


def nccl_part(device: torch.device, quick: bool) -> None:
    """One NCCL rank: which tensors its collectives take (Ray Train's GPU workers use NCCL)."""
    import torch.distributed as torch_dist

    from tasks.train.distributed import ProcessGroup

    if device.type != "cuda":
        print("NCCL: no CUDA device")
        return
    device = torch.device("cuda", torch.cuda.current_device())
    torch_dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1,
                                  device_id=device)
    try:
        for where in ("cpu", "cuda"):
            tensor = torch.ones(1, dtype=torch.float64, device=where)
            try:
                torch_dist.all_reduce(tensor)
                print(f"NCCL all_reduce of a {where} tensor: works")
            except Exception as error:  # noqa: BLE001
                print(f"NCCL all_reduce of a {where} tensor: {type(error).__name__}: {str(error).splitlines()[0][:150]}")
        group = ProcessGroup(device)
        group.world = 2  # as if a second rank: the collectives run, with this rank's value alone
        parts: list = [None]
        torch_dist.all_gather_object(parts, {"rank": 0})
        print(f"NCCL all_gather_object: {parts}; ProcessGroup.mean's reduce on {device}: {group.mean(3.0) * 2:.1f}")
    finally:
        torch_dist.destroy_process_group()


PARTS = {"throughput": throughput_part, "fit": fit_part, "ddp": ddp_part, "nccl": nccl_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test; a CPU)")
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, "
              f"{os.cpu_count()} CPUs\n")
    failed = []
    for name in args.parts.split(","):
        try:
            PARTS[name](device, args.quick)
        except Exception:  # noqa: BLE001  (report every part: one failing must not hide the others)
            traceback.print_exc()
            failed.append(name)
        print(flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
