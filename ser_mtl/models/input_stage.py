"""The network's input stage: what sits between the stored features and the paper's encoder.

The paper's encoder reads (B, 1, F, T) spectrogram segments. A pretrained speech model gives (B, C, D, T):
D = 768 channels per frame with no order along D (so 2-D kernels over D make little sense), and C layers
when several are kept apart. An input stage maps them to (B, 1, F, T) for the encoder and maps the
decoder's (B, 1, F, T) back to (B, C, D, T), so that the reconstruction target stays the frozen stored
features (standardised) and never the output of something learned (which could collapse).

``MultiTaskAAE(input_stage=...)`` takes one as ``class_path`` + ``init_args`` (the config), a dict of
that form (a checkpoint's hyper-parameters), or a callable ``(in_channels, in_rows) -> InputStage``;
the model builds it with the data's channels and rows (``data.input_channels``, ``data.input_size``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ser_mtl.config_parts import build_part


class InputStage(nn.Module, abc.ABC):
    """(B, in_channels, in_rows, T) -> (B, 1, out_rows, T) for the encoder, and back for reconstruction.

    Subclasses take ``in_channels`` and ``in_rows`` as their first two arguments (given by the model) and
    report ``out_rows``; ``init_args`` returns the other arguments (recorded in the checkpoint).
    """

    out_rows: int

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, T) -> (B, 1, out_rows, T)."""

    @abc.abstractmethod
    def reconstruct(self, h: torch.Tensor) -> torch.Tensor:
        """The decoder's (B, 1, out_rows, T) -> (B, C, D, T), compared with the input features."""

    @abc.abstractmethod
    def init_args(self) -> dict[str, Any]:
        """The constructor arguments after ``in_channels`` and ``in_rows``."""

    def config(self) -> dict[str, Any]:
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": self.init_args()}


class FrameProjection(InputStage):
    """Softmax-weighted sum of the C layers (SUPERB's featurizer; plain identity for C = 1), then a learned
    per-frame linear map D -> ``out_rows``; the way back is a per-frame linear map ``out_rows`` -> C x D.

    Args:
        in_channels: C, layers kept apart in the stored features (given by the model).
        in_rows: D, the pretrained model's width (given by the model).
        out_rows: F, the rows the encoder reads (the paper's 128).
        learn_layer_weights: learn the layer weights (else a fixed average of the C layers).
    """

    def __init__(self, in_channels: int, in_rows: int, out_rows: int = 128, learn_layer_weights: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or in_rows < 1 or out_rows < 1:
            raise ValueError(f"FrameProjection: channels, in_rows and out_rows must be >= 1, got {in_channels}, "
                             f"{in_rows}, {out_rows}")
        self.in_channels, self.in_rows, self.out_rows = int(in_channels), int(in_rows), int(out_rows)
        self.learn_layer_weights = bool(learn_layer_weights)
        weights = torch.zeros(self.in_channels)  # softmax(0) = a plain average at the start, as s3prl
        self.layer_weights = nn.Parameter(weights, requires_grad=self.learn_layer_weights and in_channels > 1)
        self.project = nn.Linear(self.in_rows, self.out_rows)
        self.unproject = nn.Linear(self.out_rows, self.in_channels * self.in_rows)

    def init_args(self) -> dict[str, Any]:
        return {"out_rows": self.out_rows, "learn_layer_weights": self.learn_layer_weights}

    def mixed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, T) -> (B, D, T), the softmax-weighted sum over the C layers."""
        w = self.layer_weights.softmax(dim=0).to(x.dtype)  # (C,)
        return torch.einsum("c,bcdt->bdt", w, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(self.mixed(x).transpose(1, 2))  # (B, T, out_rows)
        return h.transpose(1, 2).unsqueeze(1)  # (B, 1, out_rows, T)

    def reconstruct(self, h: torch.Tensor) -> torch.Tensor:
        b, _, _, t = h.shape
        y = self.unproject(h[:, 0].transpose(1, 2))  # (B, T, C * D)
        return y.transpose(1, 2).reshape(b, self.in_channels, self.in_rows, t)  # (B, C, D, T)


StageSpec = Callable[[int, int], InputStage]


def build_input_stage(spec: StageSpec | dict[str, Any] | None, in_channels: int, in_rows: int) -> InputStage | None:
    """The model's input stage for inputs of ``in_channels`` x ``in_rows``: None stays None; a dict
    ``{class_path, init_args}`` is resolved by jsonargparse, as the command line does; a callable is called."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        spec = build_part(spec, Callable[[int, int], InputStage])
    stage = spec(in_channels, in_rows)
    if not isinstance(stage, InputStage):
        raise TypeError(f"model.input_stage: expected an InputStage (ser_mtl/models/input_stage.py), got "
                         f"{type(stage).__name__}")
    return stage
