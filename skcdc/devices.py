"""Devices: which one trains, and what it computes natively."""

from __future__ import annotations

import torch

__all__ = ["native_bfloat16", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device to train on, with a clear error when it is unusable."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available on this machine; "
            "use device='auto' or device='cpu'."
        )
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'.")
    return resolved


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware: a CUDA
    device that torch reports as bfloat16-capable (compute capability 8.0 and
    up), or a CPU with AVX512-BF16 or AMX.

    On other CPUs bfloat16 is emulated and slower than float32, so autocast
    there would cost time for nothing. torch has no public query for the CPU
    features; the private ones are looked up defensively.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
