"""Self-supervised pretraining without labels (SimCLR): an architecture learns, from every image of
the dataset version (all splits' pixels; no label is read), to tell two augmented views of the same
image from the other images of its batch (NT-Xent loss). The network itself, with ``embedding``
outputs, is the encoder and projection; the members then start from its weights, every tensor but
the class head (whose shape differs) loaded by ``loop.load_initial_weights``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from tasks.data.samples import Samples, network_input
from tasks.model.architectures import build_model
from tasks.model.config import PretrainConfig
from tasks.train.augment import Augmenter


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view's positive is the other view of its image, among 2N - 1 candidates."""
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    similarity.fill_diagonal_(float("-inf"))
    n = len(z1)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return nn.functional.cross_entropy(similarity, targets)


def _view_pairs(samples: Samples, config: PretrainConfig, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of two augmented views of the same images, epoch after epoch, in a seeded order."""
    first = Augmenter(config.augment, samples.image_size, seed)
    second = Augmenter(config.augment, samples.image_size, seed + 1)
    epoch = 0
    while True:
        rows = samples.epoch_order(epoch, seed)
        shuffle = np.random.default_rng([seed, epoch])
        batch: list[np.ndarray] = []
        for image, _ in samples.images(rows, shuffle):
            batch.append(image)
            if len(batch) == config.batch_size:
                yield (torch.stack([network_input(first(i)).unsqueeze(0) for i in batch]),
                       torch.stack([network_input(second(i)).unsqueeze(0) for i in batch]))
                batch = []
        epoch += 1


def simclr(architecture: str, samples: Samples, config: PretrainConfig, seed: int = 0,
           device: torch.device | None = None, threads: int = 0) -> tuple[dict, list[float]]:
    """The pretrained network's state dict and its loss every tenth of the run (``threads``: torch
    CPU threads, 0 keeps torch's default)."""
    if threads:
        torch.set_num_threads(threads)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if len(samples) < config.batch_size:
        raise ValueError(f"pretraining needs at least batch_size={config.batch_size} images; the dataset has {len(samples)}")
    torch.manual_seed(seed)
    model = build_model(architecture, config.embedding, samples.image_size, samples.dims).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=config.steps)
    losses, recent = [], []
    for step, (a, b) in enumerate(_view_pairs(samples, config, seed)):
        if step == config.steps:
            break
        loss = nt_xent(model(a.to(device)), model(b.to(device)), config.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        recent.append(float(loss.detach()))
        if (step + 1) % max(1, config.steps // 10) == 0:
            losses.append(float(np.mean(recent)))
            recent = []
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, losses
