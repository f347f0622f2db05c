"""Small random deformations of images, for routing that is invariant to them.

The manager regularisers compare the routing of two views of an image (or of an image and its
neighbour); each view is the image under a random affine map: rotation, scaling, translation and,
for data without a natural orientation, a horizontal flip.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from mixvae.devices import cpu_draw

__all__ = ["FILLS", "random_affine"]

FILLS = ("zeros", "border")


def random_affine(
    x: torch.Tensor,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    rotate: float = 15.0,
    scale: tuple[float, float] = (0.9, 1.1),
    translate: float = 0.1,
    flip: bool = False,
    uniforms: torch.Tensor | None = None,
    fill: str = "zeros",
) -> torch.Tensor:
    """Apply an independent random affine map to each image.

    Parameters
    ----------
    x
        Images (B, D) with D = H * W (* C), values in [0, 1]; colour pixels in (H, W, C) order.
    shape
        (H, W), or (H, W, C) for C colour channels (each moved by the same map).
    generator
        Source of randomness (on the CPU), so that a run repeats exactly.
    rotate
        Largest rotation in degrees (uniform in [-rotate, rotate]).
    scale
        Range of the zoom factor.
    translate
        Largest shift, as a fraction of the image size.
    flip
        Also mirror half of the images left to right.
    uniforms
        (B, 5) uniform draws in [0, 1) that decide each image's map, instead of drawing them from
        ``generator`` (so that several processes can share out draws made for a global batch).
    fill
        What a view shows outside the original frame: ``"zeros"`` (black) or ``"border"`` (each
        image's own edge pixels, repeated outwards, so a light or coloured background stays itself).

    Returns
    -------
    torch.Tensor
        (B, D) deformed images, filled outside the original frame as ``fill`` says.
    """
    if fill not in FILLS:
        raise ValueError(f"fill={fill!r} is invalid: expected one of {FILLS}")
    B = x.shape[0]
    h, w = shape[:2]
    u = cpu_draw(torch.rand, B, 5, generator=generator) if uniforms is None else uniforms  # (B, 5)
    u = u.to(x.device)
    angle = (u[:, 0] * 2 - 1) * rotate * math.pi / 180
    s = scale[0] + u[:, 1] * (scale[1] - scale[0])
    tx, ty = (u[:, 2] * 2 - 1) * translate, (u[:, 3] * 2 - 1) * translate
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
    if flip:
        sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
        theta[:, 0, 0] = theta[:, 0, 0] * sign
        theta[:, 1, 0] = theta[:, 1, 0] * sign
    grid = F.affine_grid(theta.to(x.dtype), [B, 1, h, w], align_corners=False)  # (B, H, W, 2)
    if len(shape) == 3:
        c = shape[2]
        out = F.grid_sample(x.view(B, h, w, c).permute(0, 3, 1, 2), grid, padding_mode=fill,
                            align_corners=False)  # (B, C, H, W)
        return out.permute(0, 2, 3, 1).reshape(B, h * w * c)
    out = F.grid_sample(x.view(B, 1, h, w), grid, padding_mode=fill, align_corners=False)  # (B, 1, H, W)
    return out.view(B, h * w)
