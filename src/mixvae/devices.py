"""Where mixvae makes its tensors.

Every tensor is made on the device of the tensors it meets (``device=`` at each call), with one
exception, held here: random draws are made on the CPU, from CPU generators, and then moved to
where they are used. A CPU generator seeded with the run's seed gives the same numbers on every
machine and device (CUDA's generators give others), so a run repeats anywhere, and a draw made for
the global batch on every process gives a run on several processes exactly the draws of one. The
cost is one host-to-device copy of each draw (a batch's noise: K x B x L floats).

``tests/test_devices.py`` records every tensor made while training, routing, scoring, sampling,
assigning and answering the app, and fails on one made without a device outside this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["cpu_draw"]


def cpu_draw(fn: Callable[..., torch.Tensor], *size: Any, generator: torch.Generator | None = None,
             device: torch.device | str | None = None, **kwargs: Any) -> torch.Tensor:
    """``fn`` (``torch.rand``, ``randn``, ``randint``, ``randperm``) drawn on the CPU from
    ``generator`` (torch's global CPU generator when None), then moved to ``device`` (None: kept
    on the CPU)."""
    t = fn(*size, generator=generator, device="cpu", **kwargs)
    return t if device is None else t.to(device)
