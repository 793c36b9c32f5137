"""The four networks of the paper's Figure 1, as plain ``nn.Module`` s (section 4.3).

The encoder's LAST block is conv -> MaxPool -> BN, with no ReLU: the discriminator compares z with
samples of N(0, I), which a code that cannot be negative could never look like; and as the maximum of 8
standardised values is almost always positive (mean about 1.4), BN after the pool starts each channel
of z at mean 0 and variance 1, where the prior is. Convolutions that feed a BatchNorm have no bias (BN
subtracts the batch mean). The decoder, heads and discriminator return fp32 also under autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Pool = tuple[int, int]


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 (autocast) outputs as fp32; fp32 and fp64 unchanged (``64-true`` runs stay float64)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_pools(channels: Sequence[int], pools: Sequence[Sequence[int]], who: str) -> list[Pool]:
    if len(channels) == 0 or len(channels) != len(pools):
        raise ValueError(f"{who}: channels and pools must be non-empty lists of equal length "
                         f"(one pool per conv block), got {len(channels)} channels and {len(pools)} pools")
    for pool in pools:
        if len(pool) != 2 or min(pool) < 1:
            raise ValueError(f"{who}: every pool must be (pool_h, pool_w) with positive ints, got {pool}")
    if min(channels) < 1:
        raise ValueError(f"{who}: channels must be positive, got {list(channels)}")
    return [(int(pool[0]), int(pool[1])) for pool in pools]


class Encoder(nn.Module):
    """E_theta (also the generator): (B, in_channels, F, T) -> code z (B, channels[-1], F', T'), in blocks
    of conv -> BN -> ReLU -> MaxPool; the paper's (B, 1, 128, 256) -> (B, 32, 16, 16).

    Args:
        channels: output channels of each conv block; the last one is the latent depth (paper: 32).
        pools: (pool_h, pool_w) of each block's max-pool; F' = F / prod(pool_h), T' = T / prod(pool_w).
        in_channels: input channels (1 for a spectrogram).
        kernel_size: odd conv kernel, padded to keep the size ("same" convolution).
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 32),
                 pools: Sequence[Sequence[int]] = ((2, 2), (2, 2), (2, 4)),
                 in_channels: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        self.pools = _check_pools(channels, pools, "Encoder")
        if kernel_size % 2 != 1:
            raise ValueError(f"Encoder: kernel_size must be odd to keep the size, got {kernel_size}")
        self.channels = channels = [int(c) for c in channels]
        blocks = []
        for i, (c_in, c_out, pool) in enumerate(zip([in_channels, *channels], channels, self.pools)):
            conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False)
            if i < len(channels) - 1:
                layers: list[nn.Module] = [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(pool)]
            else:  # the code: no ReLU, and BN after the pool so that it starts out standardised like N(0, I)
                layers = [conv, nn.MaxPool2d(pool), nn.BatchNorm2d(c_out)]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)

    def output_shape(self, input_hw: Sequence[int]) -> tuple[int, int, int]:
        """(C, F', T') of the code for inputs of spatial size ``input_hw`` = (F, T); ValueError if not divisible."""
        ph, pw = map(math.prod, zip(*self.pools))
        f, t = int(input_hw[0]), int(input_hw[1])
        if f % ph or t % pw:
            raise ValueError(f"Encoder: input size (F, T) = ({f}, {t}) must be divisible by the pooling "
                             f"products ({ph}, {pw}) of pools {self.pools}, so that the decoder can mirror it")
        return self.channels[-1], f // ph, t // pw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)  # (B, 1, F, T) -> (B, C, F', T')


class Decoder(nn.Module):
    """D_delta: code (B, channels[-1], F', T') -> reconstruction (B, out_channels, F, T), mirroring the
    `Encoder` of these ``channels`` and ``pools`` with one ConvTranspose2d per block, stride = pool, kernel
    = stride + 2 * ceil(stride / 2): neighbouring code cells overlap (a kernel equal to the stride would
    paint isolated tiles). BN + ReLU in between; the last layer is linear (standardised inputs)."""

    def __init__(self, channels: Sequence[int] = (16, 32, 32),
                 pools: Sequence[Sequence[int]] = ((2, 2), (2, 2), (2, 4)), out_channels: int = 1) -> None:
        super().__init__()
        pools = _check_pools(channels, pools, "Decoder")
        targets = [out_channels] + [int(c) for c in channels[:-1]]  # what block i maps back to
        blocks = []
        for i, stride in reversed(list(enumerate(pools))):
            pad = tuple((s + 1) // 2 for s in stride)
            kernel = tuple(s + 2 * p for s, p in zip(stride, pad))
            layers: list[nn.Module] = [nn.ConvTranspose2d(int(channels[i]), targets[i], kernel, stride=stride,
                                                          padding=pad, bias=i == 0)]
            if i > 0:  # the last layer is linear
                layers += [nn.BatchNorm2d(targets[i]), nn.ReLU(inplace=True)]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return full_precision(self.blocks(z))  # (B, C, F', T') -> (B, 1, F, T)


def _pooled_hw(in_hw: Sequence[int], who: str) -> tuple[int, int]:
    h, w = int(in_hw[0]) // 2, int(in_hw[1]) // 2
    if h < 1 or w < 1:
        raise ValueError(f"{who}: input of spatial size {tuple(in_hw)} is too small for a 2x2 max-pool")
    return h, w


class _TimeStatistics(nn.Module):
    """(B, C, H, W) -> (B, 2 * C * H): mean and standard deviation over the last (time) axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1)  # (B, C, H)
        std = (x.var(dim=-1, unbiased=False) + 1e-5).sqrt()  # (B, C, H); eps keeps the gradient finite at 0
        return torch.cat([mean, std], dim=1).flatten(1)  # (B, 2 * C * H)


class ClassifierHead(nn.Module):
    """C_phi: code (B, in_channels, H, W) -> logits (B, n_classes) [and hidden (B, hidden), the d-vector].

    Args:
        in_channels: depth of the code.
        in_hw: (H, W) of the code.
        n_classes: number of classes of the task.
        conv_channels: channels of the head's conv layer.
        hidden: width of the first dense layer (the d-vector of the speaker head).
        dropout: dropout rate between the two dense layers (paper: 0.3).
        pool: "flatten" (the paper): 2x2 max-pool, (C, H/2, W/2) -> C*H/2*W/2. "stats" (x-vector style):
            2x1 max-pool, then mean and std of each row over time, (C, H/2, W) -> 2*C*H/2: the dense layer
            sees how features are distributed over the segment, not where, with W/4 times fewer weights.
    """

    def __init__(self, in_channels: int, in_hw: Sequence[int], n_classes: int, conv_channels: int = 32,
                 hidden: int = 128, dropout: float = 0.3, pool: Literal["flatten", "stats"] = "flatten") -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"ClassifierHead: n_classes must be >= 1, got {n_classes}")
        if pool not in ("flatten", "stats"):
            raise ValueError(f"ClassifierHead: pool must be 'flatten' or 'stats', got {pool!r}")
        h, w = _pooled_hw(in_hw, "ClassifierHead")
        self.pool = pool
        layers: list[nn.Module] = [nn.Conv2d(in_channels, conv_channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(conv_channels), nn.ReLU(inplace=True)]
        if pool == "flatten":
            layers += [nn.MaxPool2d(2), nn.Flatten()]  # (B, C, H, W) -> (B, C * H/2 * W/2)
            n_in = conv_channels * h * w
        else:
            layers += [nn.MaxPool2d((2, 1)), _TimeStatistics()]  # (B, C, H, W) -> (B, 2 * C * H/2)
            n_in = 2 * conv_channels * h
        self.features = nn.Sequential(*layers)
        self.hidden = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_classes)

    def forward(self, z: torch.Tensor, return_hidden: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, n_classes); with ``return_hidden`` also the last hidden layer (B, hidden), before dropout."""
        h = self.hidden(self.features(z))  # (B, hidden)
        logits = full_precision(self.out(self.dropout(h)))  # (B, n_classes)
        return (logits, full_precision(h)) if return_hidden else logits


class Discriminator(nn.Module):
    """D_omega: code or prior sample (B, in_channels, H, W) -> logit (B, 1) that it came from N(0, I);
    arguments as for `ClassifierHead`. No BatchNorm: real and fake batches are scored separately, and
    batch statistics would let it tell them apart by the batch as a whole instead of per sample."""

    def __init__(self, in_channels: int, in_hw: Sequence[int], conv_channels: int = 32, hidden: int = 128) -> None:
        super().__init__()
        h, w = _pooled_hw(in_hw, "Discriminator")
        self.net = nn.Sequential(nn.Conv2d(in_channels, conv_channels, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.MaxPool2d(2), nn.Flatten(), nn.Linear(conv_channels * h * w, hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return full_precision(self.net(z))  # (B, C, H, W) -> (B, 1)
