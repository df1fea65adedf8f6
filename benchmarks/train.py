"""Training benchmark: epoch time of `medflow train` (Ray Train, one member, one worker) beside a plain
single-process PyTorch loop on the same model, data, batch size, augmentation and threads, in one run.

Both sides run E epochs (the plain loop twice: before and after medflow, so a drift in the machine's
load hits both sides alike). An epoch's time is the gap between consecutive epoch starts (training,
the validation pass and, for medflow, the checkpoint written to the run folder), so E-1 epochs are
timed per run; the first is dropped as warm-up and the median of the rest is reported.
Target: ratio <= 1.10 on CPU.

`--throughput`: images/s of the per-worker loop alone (no Ray, no Prefect), e.g. ResNet-18 at 224 px
in the loop's arithmetic (``--precision``, default auto: float16 autocast on a GPU, bfloat16 on a CPU
with AMX) and channels-last, and the fraction of each step spent waiting for the data loader.

Usage: python benchmarks/train.py [--data PATH] [--model resnet18] [--epochs 5] [--threads 2]
       python benchmarks/train.py --throughput [--size 224] [--batch 128] [--steps 50] [--loader-workers 8] [--dims 3]
                                           [--precision auto|float32|bfloat16|float16]
"""

from __future__ import annotations

import argparse
import atexit
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PixelDataset(Dataset):
    """In-memory uint8 images -> normalised tensors, augmented when given an augmenter."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment=None) -> None:
        self.images, self.labels, self.augment = images, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from tasks.data.samples import network_input

        image = self.augment(self.images[i]) if self.augment is not None else self.images[i]
        return network_input(image).unsqueeze(0), int(self.labels[i])


def plain_epochs(config, train, val, epochs: int, threads: int) -> list[float]:
    """The simplest single-process loop doing the same work; returns each epoch's start time."""
    from tasks.model.architectures import build_model
    from tasks.train.augment import Augmenter
    from tasks.train.loop import class_weights
    from tasks.train.precision import autocast_dtype, to_layout

    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    size = train.images.shape[-1]
    model = build_model(config.model, 2, size).to(memory_format=torch.channels_last)
    autocast = autocast_dtype(config.precision, torch.device("cpu"))  # the same arithmetic as medflow's loop
    loader = DataLoader(PixelDataset(train.images, train.labels, Augmenter(config.augment, size, config.seed)),
                        batch_size=config.batch_size, shuffle=True)
    val_loader = DataLoader(PixelDataset(val.images, val.labels), batch_size=256)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train.labels, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=epochs * len(loader))
    starts = []
    for _ in range(epochs):
        starts.append(time.time())
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
                loss = loss_fn(model(to_layout(x)), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            for x, _ in val_loader:
                torch.softmax(model(x), dim=1)
    return starts


def epoch_times(starts: list[float]) -> list[float]:
    return [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]  # first epoch dropped (warm-up)


def compare(args: argparse.Namespace) -> None:
    os.environ.setdefault("MEDFLOW_PSEUDONYM_KEY", secrets.token_urlsafe(32))
    from flows.startup import environment_defaults

    environment_defaults()
    from benchmarks.pneumonia import DEFAULT_DATA, load, write_corpus, write_labels  # the DICOM writer: not on a GPU box
    from flows.ingest import IngestParams, ingest_flow
    from flows.startup import start_services
    from flows.train import TrainParams, train_flow
    from tasks.core import storage
    from tasks.data.samples import load_split
    from tasks.model.config import EnsembleConfig

    work = tempfile.mkdtemp(prefix="medflow-train-bench-")
    atexit.register(shutil.rmtree, work, True)
    images, labels, splits = load(args.data or DEFAULT_DATA, None)
    keep = [i for i, s in enumerate(splits) if s in ("train", "val")]
    rows = write_corpus(os.path.join(work, "source"), images[keep], labels[keep], [splits[i] for i in keep], 28)
    write_labels(os.path.join(work, "source", "labels.csv"), rows)
    start_services()
    ingest = IngestParams(source=os.path.join(work, "source"), labels=os.path.join(work, "source", "labels.csv"),
                          dataset=os.path.join(work, "dataset"), rejects=os.path.join(work, "rejects.csv"), image_size=28)
    ingest_flow(ingest)
    config = EnsembleConfig.model_validate({
        "members": 1, "architectures": [args.model], "workers": 1, "cpus_per_worker": args.threads,
        "train": {"epochs": args.epochs, "early_stopping_patience": args.epochs, "num_threads": args.threads}})
    member = config.member_config(config.plans()[0])
    classes = ["normal", "pneumonia"]
    train, val = load_split(ingest.dataset, "train", classes), load_split(ingest.dataset, "val", classes)

    # plain before and after medflow: a drift in the shared machine's load hits both sides alike
    plain = epoch_times(plain_epochs(member, train, val, args.epochs, args.threads))
    run = os.path.join(work, "run")
    train_flow(TrainParams(dataset=ingest.dataset, run=run, config=config))
    record = storage.read_json(storage.join(run, "model", "members", "member-0.json"))
    medflow = epoch_times([h["epoch_started"] for h in record["history"]])
    plain += epoch_times(plain_epochs(member, train, val, args.epochs, args.threads))
    m, p = statistics.median(medflow), statistics.median(plain)
    print(f"\n{args.model} on PneumoniaMNIST train ({len(train)} images, 28 px), batch {member.batch_size}, "
          f"{args.threads} thread(s), {args.epochs} epochs (first dropped)")
    print(f"  plain PyTorch loop      epoch {p:7.2f} s   ({', '.join(f'{t:.1f}' for t in plain)})")
    print(f"  medflow train (Ray)     epoch {m:7.2f} s   ({', '.join(f'{t:.1f}' for t in medflow)})")
    print(f"  ratio medflow / plain   {m / p:.3f}   (target <= 1.10)")


def throughput(args: argparse.Namespace) -> dict[str, float]:
    """Images/s of train_epoch with the project's dataset, augmentation and loader (and of the same
    steps on one batch already in memory); no Ray."""
    from functools import partial

    from tasks.data.samples import InMemory, Share
    from tasks.model.architectures import build_model
    from tasks.model.config import AugmentConfig
    from tasks.train.augment import Augmenter
    from tasks.train.loop import train_epoch
    from tasks.train.precision import for_steps, grad_scaler, precision_name

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    n = args.batch * args.steps
    rng = np.random.default_rng(0)
    shape = (args.size,) * args.dims
    samples = InMemory(rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 2, n))
    loader = samples.loader(Share(epoch=0, rank=0, world=1, train=True), args.batch, 0, partial(Augmenter, AugmentConfig()),
                            args.loader_workers, pin_memory=device.type == "cuda")
    model, autocast = for_steps(build_model(args.model, 2, args.size, args.dims), args.precision, device, args.size,
                                args.dims)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = grad_scaler(autocast, device)
    loss_fn = nn.CrossEntropyLoss()
    train_epoch(model, loader, optimizer, loss_fn, device, scaler=scaler, autocast=autocast)  # warm-up (cudnn autotune, workers)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_epoch(model, loader, optimizer, loss_fn, device, scaler=scaler, autocast=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize()
    full = time.perf_counter() - start
    # the same steps on one batch already in memory: the compute-only rate
    x, y = next(iter(loader))
    start = time.perf_counter()
    train_epoch(model, [(x, y)] * args.steps, optimizer, loss_fn, device, scaler=scaler, autocast=autocast)
    if device.type == "cuda":
        torch.cuda.synchronize()
    compute = time.perf_counter() - start
    kind = " volumes" if args.dims == 3 else ""
    print(f"{args.model} @ {args.size}px{kind}, batch {args.batch}, {device.type} ({args.threads} CPU threads), {precision_name(autocast)}"
          f"{' autocast' if autocast else ''}, channels-last, "
          f"{args.loader_workers} loader workers")
    print(f"  with the data loader   {n / full:9.0f} img/s")
    print(f"  compute only           {n / compute:9.0f} img/s")
    print(f"  loader keeps the device busy {100 * min(compute / full, 1):.0f}% of the time")
    return {"loader": n / full, "compute": n / compute}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="PneumoniaMNIST .npz (default: ../shared/data/pneumoniamnist.npz)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--loader-workers", type=int, default=8)
    parser.add_argument("--dims", type=int, choices=[2, 3], default=2, help="3: volumes of size^3 (3-D networks)")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                        help="--throughput: the training steps' arithmetic (train.precision)")
    args = parser.parse_args()
    throughput(args) if args.throughput else compare(args)


if __name__ == "__main__":
    main()
