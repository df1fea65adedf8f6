"""DDP through a plain torch.distributed process group (``ProcessGroup``, which Ray Train's workers
subclass): two real gloo ranks run ``fit``, each on its own share of the data."""

from __future__ import annotations

import torch

from benchmarks.gpu import ddp_fit


def test_two_ranks_keep_one_model_and_judge_it_on_every_rank_s_rows():
    first, second = ddp_fit("cpu", n=64, size=16, epochs=2)
    assert first["seen"] == second["seen"] == [0, 1]  # all_objects: every rank's value, in rank order
    assert first["mean"] == second["mean"] == 0.5
    # each rank read its own half: only synchronised gradients leave the two with equal parameters
    assert first["weights"].keys() == second["weights"].keys() and len(first["weights"]) > 10
    for name, value in first["weights"].items():
        assert torch.equal(value, second["weights"][name]), name
    # validation rows gathered from both ranks: both judge the same predictions of the whole split
    assert [h["val_auc"] for h in first["history"]] == [h["val_auc"] for h in second["history"]]
    assert len(first["history"]) == 2 and all(0 <= h["val_auc"] <= 1 for h in first["history"])
