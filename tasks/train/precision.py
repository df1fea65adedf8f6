"""The arithmetic a member's training steps run in (``train.precision``) and the tensor layout that
goes with it.

``auto`` is float16 autocast with a gradient scaler on CUDA; on a CPU with bfloat16 matrix units
(Intel AMX, AVX-512 BF16) it is bfloat16 autocast; elsewhere it is float32. The weights, the optimizer, the
weight average and every validation or prediction pass stay float32. Batches and weights are
channels-last (NHWC / NDHWC), which oneDNN and cuDNN convolve faster on either device.
"""

from __future__ import annotations

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
