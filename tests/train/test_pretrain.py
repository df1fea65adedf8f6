"""Self-supervised pretraining without labels: the contrastive loss, and a network that learns to
match two views of the same image, whose weights members then start from."""

from __future__ import annotations

import numpy as np
import torch

from tasks.data.samples import InMemory
from tasks.model.architectures import build_model
from tasks.model.config import PretrainConfig
from tasks.train.pretrain import nt_xent, simclr
from tasks.train.weights import load_initial_weights
from tests.train.test_train_loop import SIZE, lesion_set


def test_nt_xent_is_low_when_the_two_views_agree_and_high_when_they_do_not():
    torch.manual_seed(0)
    z = torch.randn(16, 64)
    aligned, unrelated = float(nt_xent(z, z + 0.01 * torch.randn(16, 64), 0.2)), float(nt_xent(z, torch.randn(16, 64), 0.2))
    assert aligned < 0.3 and unrelated > 3.0  # chance: log(2N - 1) = 3.43


def test_pretraining_learns_without_labels_and_members_start_from_it(tmp_path):
    torch.set_num_threads(2)
    images, _ = lesion_set(96, 0)
    unlabelled = InMemory(images, np.full(len(images), -1))  # no label is read
    config = PretrainConfig(steps=40, batch_size=16)
    state, losses = simclr("seed_cnn", unlabelled, config, seed=0)
    assert len(losses) == 10 and losses[-1] < losses[0]
    path = tmp_path / "pretrained.pt"
    torch.save(state, path)
    member = build_model("seed_cnn", 2, SIZE)
    load_initial_weights(member, str(path))  # everything but the class head (embedding-sized) loads
    assert torch.equal(member.state_dict()["features.0.0.weight"], state["features.0.0.weight"])
    assert member.state_dict()["head.4.weight"].shape == (2, 512) != state["head.4.weight"].shape
