"""K runs' layer stacks as ONE grouped network: the forward pass of a packed module, layer by layer.

`grouped_forward` walks an ``nn.Sequential`` of the layers ``ser_mtl/models/components.py`` builds
(Conv2d, ConvTranspose2d, BatchNorm2d, ReLU, MaxPool2d, Flatten, the heads' time statistics,
Linear) and applies each to all K runs at once, with the runs' stacked parameters (K, ...):

* image-like activations are (B, K*C, H, W), run-major channels (run k owns channels k*C .. k*C+C-1):
  a convolution with ``groups = K`` convolves each run's channels with that run's kernels only; a
  BatchNorm over the K*C channels normalises each run's channels with its own batch statistics and
  updates its own running statistics (the (K, C) buffers, in place); ReLU and max-pooling act per
  channel. So the K runs never mix, and nothing is copied between layers;
* flat activations are (K, B, N): a linear layer is one batched matrix product per layer.

This is the unpacked math run by run (tests/test_packed.py checks a packed step against unpacked
steps); it replaces ``torch.func.vmap`` over ``functional_call``, whose batching rules move the run
axis in and out of every convolution and BatchNorm with a copy each time.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ser_mtl.models.components import _TimeStatistics


def to_grouped(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """(K, B, C, H, W) -> (B, K*C, H, W), run-major channels."""
    k, b, c, h, w = x.shape
    if channels_last:  # strides (H*W*KC, 1, W*KC, KC) also for KC = 1, where .contiguous(channels_last) is a no-op
        kc = k * c
        out = torch.empty_strided((b, kc, h, w), (h * w * kc, 1, w * kc, kc), dtype=x.dtype, device=x.device)
        return out.copy_(x.transpose(0, 1).reshape(b, kc, h, w))
    return x.transpose(0, 1).reshape(b, k * c, h, w).contiguous()


def grouped_forward(module: nn.Module, name: str, tensors: Mapping[str, torch.Tensor], x: torch.Tensor, k: int,
                    training: bool, channels_last: bool = False) -> torch.Tensor:
    """``module`` (named ``name`` in ``tensors``, whose entries are (K, ...) stacks) for K runs at once.
    ``channels_last``: the convolutions' kernels in that memory format, so that their outputs are too (a
    kernel with one input channel is ambiguous, and a contiguous one would turn the whole stack contiguous)."""
    if isinstance(module, nn.Sequential):
        for child_name, child in module.named_children():
            x = grouped_forward(child, f"{name}.{child_name}", tensors, x, k, training, channels_last)
        return x
    weight, bias = tensors.get(f"{name}.weight"), tensors.get(f"{name}.bias")
    flat_bias = bias.flatten() if bias is not None else None
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kernel = weight.flatten(0, 1)  # Conv2d (K*C_out, C_in / groups, kh, kw); transposed (K*C_in, C_out / groups, ...)
        if channels_last:
            kernel = kernel.contiguous(memory_format=torch.channels_last)
        if isinstance(module, nn.Conv2d):
            return F.conv2d(x, kernel, flat_bias, module.stride, module.padding, module.dilation, k * module.groups)
        return F.conv_transpose2d(x, kernel, flat_bias, module.stride, module.padding, module.output_padding,
                                  k * module.groups, module.dilation)
    if isinstance(module, nn.BatchNorm2d):
        if module.momentum is None:
            raise NotImplementedError(f"grouped_forward: {name} has momentum=None (cumulative averages); "
                                      "packed BatchNorm uses a fixed momentum")
        mean, var = tensors[f"{name}.running_mean"], tensors[f"{name}.running_var"]  # (K, C), updated in place
        out = F.batch_norm(x, mean.view(-1), var.view(-1), weight.flatten(), flat_bias, training,
                           module.momentum, module.eps)
        if training:
            tensors[f"{name}.num_batches_tracked"].add_(1)  # (K,)
        return out
    if isinstance(module, nn.ReLU):
        return F.relu(x, inplace=module.inplace)  # in place as the unpacked module: one (B, K*C, H, W) less
    if isinstance(module, nn.MaxPool2d):
        return F.max_pool2d(x, module.kernel_size, module.stride, module.padding, module.dilation,
                            ceil_mode=module.ceil_mode)
    if isinstance(module, nn.Flatten):  # (B, K*C, H, W) -> (K, B, C*H*W), each run's C, H, W order
        if module.start_dim != 1 or module.end_dim != -1:
            raise NotImplementedError(f"grouped_forward: {name} flattens dims {module.start_dim}..{module.end_dim}")
        return x.reshape(x.shape[0], k, -1).transpose(0, 1)
    if isinstance(module, _TimeStatistics):  # (B, K*C, H, W) -> (K, B, 2*C*H): [mean; std] over time per run
        b, kc, h, _ = x.shape
        mean = x.mean(dim=-1).view(b, k, kc // k, h)
        std = (x.var(dim=-1, unbiased=False) + 1e-5).sqrt().view(b, k, kc // k, h)
        return torch.cat([mean, std], dim=2).reshape(b, k, -1).transpose(0, 1)
    if isinstance(module, nn.Linear):  # x (K, B, N), weight (K, out, N), bias (K, out)
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
    raise TypeError(f"grouped_forward: no packed form of {type(module).__name__} ({name})")
