"""The weights a member starts from (``train.init_weights``: a local state dict) and the moving
average of its weights that it is judged by and keeps (``weight_averaging: ema``)."""

from __future__ import annotations

import copy
import io

import torch
from torch import nn

from tasks.core import storage
from tasks.model.config import TrainConfig


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (state dicts without ``module.`` prefixes)."""
    return getattr(model, "module", model)


class WeightAverage:
    """An exponential moving average of a network's weights and float buffers, updated every step;
    the decay ramps up over the first steps so that a short run is not dominated by its initial weights."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = unwrap(model).state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(current[name], 1 - decay)
            else:
                value.copy_(current[name])


def average_decay(config: TrainConfig, steps: int) -> float | None:
    """The weight average's decay for a run of ``steps``: ``ema_decay`` when given, else a time constant
    of ``ema_window`` of the run (a 1500-step run averages over fewer steps than a 4440-step one);
    None when the member keeps its own weights (``weight_averaging: none``)."""
    if config.weight_averaging != "ema":
        return None
    return config.ema_decay or 1 - 1 / max(1.0, config.ema_window * steps)


def load_initial_weights(model: nn.Module, uri: str) -> None:
    """Start from a local state dict (a user's own pretrained backbone; never a download). Tensors
    whose name and shape match are loaded; a file that matches nothing is an error, not a silent no-op."""
    state = torch.load(io.BytesIO(storage.read_bytes(storage.normalize(uri))), weights_only=True, map_location="cpu")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"init_weights {uri}: no tensor matches the {type(model).__name__} network by name and shape")
    model.load_state_dict(usable, strict=False)
