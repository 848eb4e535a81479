"""Neural responses as float64 tensors for the metrics (validated by ``cortexalign.neural``)."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from cortexalign.neural import validate_responses

__all__ = ["responses_tensor"]


def responses_tensor(target: xr.DataArray, device: torch.device,
                     keep_repetitions: bool = False) -> torch.Tensor:
    """Responses as (s, n) float64 (mean over repetitions) or (s, n, r) when ``keep_repetitions``."""
    da = validate_responses(target, allow_nan=False)
    values = np.asarray(da.values, dtype=np.float64)
    if values.ndim == 3 and not keep_repetitions:
        values = values.mean(axis=2)
    return torch.as_tensor(values, device=device)
