"""The arithmetic a member's training steps run in (``train.precision``) and the tensor layout that
goes with it.

``auto`` is float16 autocast with a gradient scaler on CUDA; on a CPU with bfloat16 matrix units
(Intel AMX, AVX-512 BF16) it is bfloat16 autocast; elsewhere it is float32. The weights, the optimizer, the
weight average and every validation or prediction pass stay float32. Batches and weights are
channels-last (NHWC / NDHWC), which oneDNN and cuDNN convolve faster on either device.

One exception: a 3-D convolution whose input is 2 deep runs in float32 on a CPU even when the
steps are bfloat16, since oneDNN's bfloat16 kernel gets its weight gradient wrong there
(``keep_float32_where_bfloat16_fails``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MethodType

import torch

from tasks.model.config import Precision


def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX tiles or AVX-512 BF16)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu has no public name for these
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The dtype training steps autocast to on ``device``; None for plain float32."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bfloat16() else None
    return None if precision == "float32" else getattr(torch, precision)


def precision_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """float16 needs its gradients scaled (they underflow); bfloat16 has float32's range and does not."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def channels_last(dims: int) -> torch.memory_format:
    """The channels-last layout of 2-D (NHWC) or 3-D (NDHWC) batches."""
    return torch.channels_last_3d if dims == 3 else torch.channels_last


def in_layout(model: torch.nn.Module) -> torch.nn.Module:
    """The network with its weights channels-last in the layout of its convolutions: NDHWC if it
    convolves in 3-D, else NHWC (a 2-D network, including one that reads a volume's slices as channels)."""
    conv3d = any(isinstance(m, torch.nn.Conv3d) for m in model.modules())
    return model.to(memory_format=torch.channels_last_3d if conv3d else torch.channels_last)


def to_layout(x: torch.Tensor) -> torch.Tensor:
    """A batch (N, C, spatial...) in the channels-last layout."""
    return x.contiguous(memory_format=channels_last(x.dim() - 2)) if x.dim() in (4, 5) else x


def _float32_forward(conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return type(conv).forward(conv, x.float())


def keep_float32_where_bfloat16_fails(model: torch.nn.Module, autocast: torch.dtype | None, image_size: int,
                                      dims: int) -> list[str]:
    """Run in float32 the 3-D convolutions whose input is 2 deep when ``model``'s steps autocast to
    bfloat16 on a CPU; returns their names. There oneDNN's bfloat16 kernel (torch 2.13, an AMD EPYC
    with AVX-512 BF16) computes a weight gradient that is off by up to 1e36, or NaN, and differs from
    step to step, while inputs 1 or 3-9 deep, and 2-D convolutions, agree with float32 to 0.5%
    (``tests/train/test_precision.py``). Such layers are usually a network's last and smallest.
    The weights and their names are unchanged."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv3d)}
    if autocast != torch.bfloat16 or not convs or next(iter(convs.values())).weight.device.type != "cpu":
        return []
    depths: dict[str, int] = {}

    def record(name: str) -> Callable:
        def hook(_: torch.nn.Module, args: tuple) -> None:
            depths[name] = args[0].shape[2]
        return hook

    hooks = [conv.register_forward_pre_hook(record(name)) for name, conv in convs.items()]
    training = model.training
    try:  # one image through the network, in eval mode (batch statistics of one image are not needed)
        with torch.no_grad():
            model.eval()(torch.zeros(1, next(iter(convs.values())).in_channels, *(image_size,) * dims))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    shallow = [name for name, depth in depths.items() if depth == 2]
    for name in shallow:
        convs[name].forward = MethodType(_float32_forward, convs[name])
    return shallow


def for_steps(model: torch.nn.Module, precision: Precision, device: torch.device, image_size: int,
              dims: int) -> tuple[torch.nn.Module, torch.dtype | None]:
    """``model`` readied for training steps in ``precision`` on ``device`` (channels-last, the layers
    bfloat16 gets wrong kept float32), and the dtype the steps autocast to: what the loop, the
    planner's speed probe and the throughput benchmark all train."""
    model = in_layout(model.to(device))
    autocast = autocast_dtype(precision, device)
    keep_float32_where_bfloat16_fails(model, autocast, image_size, dims)
    return model, autocast
