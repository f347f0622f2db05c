"""Convolutional networks batched over the K experts: each layer is one grouped convolution.

Expert k's channels are group k of a ``(B, K * C, H, W)`` tensor, so one ``conv2d`` (or
``conv_transpose2d``) with ``groups=K`` runs every expert's layer at once; the first layer of an
encoder sees an image shared by all experts and is one ordinary convolution with ``K * C_out``
output channels. Weights are stored as ``(K, ...)`` tensors, like :class:`mixvae.nets.ExpertLinear`.

Images enter and leave flat, ``(B, D)`` or ``(K, B, D)`` with ``D = H * W * C`` in (H, W, C)
order, the layout of the data pipeline; every layer halves (encoder) or doubles (decoder) the
height and width with a 4x4 kernel, stride 2 and padding 1.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from mixvae.nets import ExpertLinear, ExpertMLP, Manager, activation

__all__ = ["ConvExpertDecoder", "ConvExpertEncoder", "ConvManager", "ExpertConv2d", "ExpertConvTranspose2d",
           "conv_sizes"]

KERNEL, STRIDE, PADDING = 4, 2, 1


def conv_sizes(side: int, n_layers: int) -> list[int]:
    """The side length after each encoder layer, the input's first: 28, 2 layers -> [28, 14, 7]."""
    sizes = [side]
    for _ in range(n_layers):
        sizes.append((sizes[-1] + 2 * PADDING - KERNEL) // STRIDE + 1)
    return sizes


def _init_(weight: torch.Tensor, bias: torch.Tensor, fan_in: int, fan_out: int, init: str) -> None:
    """Glorot-uniform weights and zero biases, or torch's default for a convolution (uniform in
    +/- 1/sqrt(fan_in) for both), each expert drawn independently."""
    with torch.no_grad():
        if init == "glorot_uniform":
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            weight.uniform_(-bound, bound)
            bias.zero_()
        else:
            bound = 1.0 / math.sqrt(fan_in)
            weight.uniform_(-bound, bound)
            bias.uniform_(-bound, bound)


class _ExpertConvLayer(nn.Module):
    """The weights of K independent 4x4 convolutions, one (K, *channels, 4, 4) tensor, and a
    (K, C_out) bias."""

    def __init__(self, n_experts: int, in_channels: int, out_channels: int, init: str, channels: tuple[int, int]):
        super().__init__()
        self.n_experts, self.in_channels, self.out_channels = n_experts, in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(n_experts, *channels, KERNEL, KERNEL))
        self.bias = nn.Parameter(torch.empty(n_experts, out_channels))
        area = KERNEL * KERNEL
        _init_(self.weight, self.bias, in_channels * area, out_channels * area, init)

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}, in={self.in_channels}, out={self.out_channels}, kernel={KERNEL}"


class ExpertConv2d(_ExpertConvLayer):
    """K independent 4x4 stride-2 convolutions, stored as one (K, C_out, C_in, 4, 4) weight.

    Input ``(B, C_in, H, W)`` shared by all experts or ``(B, K * C_in, H, W)`` (group k is
    expert k's); output ``(B, K * C_out, H', W')``.
    """

    def __init__(self, n_experts: int, in_channels: int, out_channels: int, init: str = "glorot_uniform"):
        super().__init__(n_experts, in_channels, out_channels, init, (out_channels, in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, C = self.n_experts, self.in_channels
        weight = self.weight.reshape(K * self.out_channels, C, KERNEL, KERNEL)
        # a shared input is convolved once with all K experts' filters; per-expert input by group
        groups = 1 if x.shape[1] == C else K
        return F.conv2d(x, weight, self.bias.reshape(-1), STRIDE, PADDING, groups=groups)  # (B, K*C_out, H', W')


class ExpertConvTranspose2d(_ExpertConvLayer):
    """K independent 4x4 stride-2 transposed convolutions, one (K, C_in, C_out, 4, 4) weight:
    ``(B, K * C_in, H, W)`` -> ``(B, K * C_out, 2H + output_padding, 2W + output_padding)``."""

    def __init__(self, n_experts: int, in_channels: int, out_channels: int, init: str = "glorot_uniform"):
        super().__init__(n_experts, in_channels, out_channels, init, (in_channels, out_channels))

    def forward(self, x: torch.Tensor, output_padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
        K = self.n_experts
        weight = self.weight.reshape(K * self.in_channels, self.out_channels, KERNEL, KERNEL)
        return F.conv_transpose2d(x, weight, self.bias.reshape(-1), STRIDE, PADDING, output_padding, groups=K)


def _to_nchw(x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Flat images in (H, W, C) order, (B, D) or (K, B, D), -> (B, C, H, W) or (B, K*C, H, W)."""
    h, w, c = shape
    if x.dim() == 2:
        return x.view(-1, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)
    K, B = x.shape[:2]
    return x.view(K, B, h, w, c).permute(1, 0, 4, 2, 3).reshape(B, K * c, h, w)  # (B, K*C, H, W)


class ConvExpertEncoder(nn.Module):
    """q_k(z|x) = N(mu_k(x), diag(var_k(x))) for all K experts, from convolutions then ``hidden`` layers.

    ``x`` is ``(B, D)`` shared by all experts or ``(K, B, D)``; mean and variance are ``(K, B, L)``.
    """

    def __init__(self, n_experts: int, image_shape: tuple[int, int, int], conv_channels: tuple[int, ...],
                 hidden: tuple[int, ...], latent_dim: int, act: str, init: str, min_var: float):
        super().__init__()
        self.image_shape, self.n_experts, self.min_var = image_shape, n_experts, min_var
        h, w, c = image_shape
        chans = [c, *conv_channels]
        self.convs = nn.ModuleList(ExpertConv2d(n_experts, a, b, init) for a, b in pairwise(chans))
        self.act = activation(act)
        flat = conv_channels[-1] * conv_sizes(h, len(conv_channels))[-1] * conv_sizes(w, len(conv_channels))[-1]
        self.trunk = ExpertMLP(n_experts, [flat, *hidden], act, init)
        width = hidden[-1] if hidden else flat
        self.mu = ExpertLinear(n_experts, width, latent_dim, init)
        self.log_var = ExpertLinear(n_experts, width, latent_dim, init)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = _to_nchw(x, self.image_shape)  # (B, C, H, W) or (B, K*C, H, W)
        for conv in self.convs:
            h = self.act(conv(h))  # (B, K*C_i, H_i, W_i)
        B = h.shape[0]
        h = self.trunk(h.reshape(B, self.n_experts, -1).transpose(0, 1))  # (K, B, H)
        var = self.min_var + torch.exp(self.log_var(h))  # (K, B, L)
        return self.mu(h), var


class ConvExpertDecoder(nn.Module):
    """Decoder pre-activations of p_k(x|z) for all experts: z (K, B, L) -> (K, B, D), the mirror of
    :class:`ConvExpertEncoder` (``hidden`` layers, then transposed convolutions)."""

    def __init__(self, n_experts: int, image_shape: tuple[int, int, int], conv_channels: tuple[int, ...],
                 hidden: tuple[int, ...], latent_dim: int, act: str, init: str):
        super().__init__()
        self.image_shape, self.n_experts = image_shape, n_experts
        h, w, c = image_shape
        self.heights, self.widths = conv_sizes(h, len(conv_channels)), conv_sizes(w, len(conv_channels))
        self.start = (conv_channels[-1], self.heights[-1], self.widths[-1])
        sizes = [latent_dim, *reversed(hidden)]
        self.trunk = ExpertMLP(n_experts, sizes, act, init)
        self.fc = ExpertLinear(n_experts, sizes[-1], math.prod(self.start), init)
        chans = [*reversed(conv_channels), c]
        self.deconvs = nn.ModuleList(ExpertConvTranspose2d(n_experts, a, b, init) for a, b in pairwise(chans))
        self.act = activation(act)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        K, B = z.shape[:2]
        c0, h0, w0 = self.start
        h = self.act(self.fc(self.trunk(z)))  # (K, B, C0*H0*W0)
        h = h.view(K, B, c0, h0, w0).transpose(0, 1).reshape(B, K * c0, h0, w0)  # (B, K*C0, H0, W0)
        n = len(self.deconvs)
        for i, deconv in enumerate(self.deconvs):
            j = n - 1 - i  # the encoder layer this one undoes: its input side sizes fix the output padding
            h = deconv(h, (self.heights[j] % 2, self.widths[j] % 2))  # (B, K*C_j, H_j, W_j)
            if i < n - 1:
                h = self.act(h)
        H, W, C = self.image_shape
        return h.view(B, K, C, H, W).permute(1, 0, 3, 4, 2).reshape(K, B, H * W * C)  # (K, B, D)


class ConvManager(nn.Module):
    """The gating network with a convolutional trunk: x (B, D) -> routing logits (B, K).

    4x4 stride-2 convolutions of ``conv_channels`` (each followed by batch norm when asked, and
    the activation), then the dense :class:`mixvae.nets.Manager` on the flattened features.
    """

    def __init__(self, image_shape: tuple[int, int, int], conv_channels: tuple[int, ...], hidden: tuple[int, ...],
                 n_experts: int, act: str, init: str, batchnorm: bool = False):
        super().__init__()
        self.image_shape = image_shape
        h, w, c = image_shape
        layers: list[nn.Module] = []
        for a, b in pairwise([c, *conv_channels]):
            conv = nn.Conv2d(a, b, KERNEL, STRIDE, PADDING)
            if init == "glorot_uniform" and conv.bias is not None:
                nn.init.xavier_uniform_(conv.weight)
                nn.init.zeros_(conv.bias)
            layers += [conv, *([nn.BatchNorm2d(b)] if batchnorm else []), activation(act)]
        self.convs = nn.Sequential(*layers)
        n = len(conv_channels)
        flat = conv_channels[-1] * conv_sizes(h, n)[-1] * conv_sizes(w, n)[-1]
        self.head = Manager(flat, hidden, n_experts, act, init, batchnorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(_to_nchw(x, self.image_shape)).flatten(1))  # (B, K)
