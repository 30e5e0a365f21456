"""Conversion of user inputs (floats, numpy arrays, tensors) to tensors of one dtype and device."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def common_dtype(*values: Any) -> torch.dtype:
    """float64 if any input is a float64 array or tensor, else float32."""
    for v in values:
        if isinstance(v, torch.Tensor) and v.dtype == torch.float64:
            return torch.float64
        if isinstance(v, np.ndarray) and v.dtype == np.float64:
            return torch.float64
    return torch.float32


def common_device(*values: Any) -> torch.device:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def as_tensor(v: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(v, dtype=dtype, device=device)


def tensors(*values: Any) -> list[torch.Tensor]:
    """All inputs as tensors of their common dtype and device (see common_dtype/common_device)."""
    dtype, device = common_dtype(*values), common_device(*values)
    return [as_tensor(v, dtype, device) for v in values]
