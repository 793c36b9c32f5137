"""Initialise a model from another run's checkpoint, tensor by tensor (paper 4.3, step-by-step training).

The emotion model starts from a LibriSpeech speaker + gender model, which has no emotion head and a
speaker output layer of another size: `load_matching_weights` copies every tensor (buffers included)
whose name AND shape match and reports the rest. Read with ``weights_only=True``: it never runs code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ser_mtl.checkpoint_io import CheckpointError, read_checkpoint


@dataclass
class InitReport:
    """Outcome of `load_matching_weights`: names loaded, skipped for a different shape (name, checkpoint
    shape, model shape), missing from the checkpoint, unexpected (not in the model); ``str()`` summarises."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [(f"init_from {self.path}: loaded {len(self.loaded)} tensors, skipped {len(self.skipped_shape)} "
                  f"(shape differs), {len(self.missing)} missing from the checkpoint, "
                  f"{len(self.unexpected)} not in the model")]
        lines += [f"  skipped {name}: checkpoint {list(src)} vs model {list(dst)}"
                  for name, src, dst in self.skipped_shape]
        if self.missing:
            lines.append("  missing (kept as initialised): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append("  not in the model (ignored): " + ", ".join(self.unexpected))
        return "\n".join(lines)


def read_state_dict(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a Lightning checkpoint (its ``"state_dict"``) or of a bare state dict file, on CPU."""
    path = Path(ckpt_path)
    try:
        obj = read_checkpoint(path, require_lightning=False)
    except CheckpointError as err:
        raise CheckpointError(f"init_from: {err}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise TypeError(f"init_from: {path} holds a {type(obj).__name__}, expected a Lightning checkpoint "
                        "with 'state_dict' or a state dict {name: tensor}")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"init_from: {path} contains no named tensors (keys: {list(obj)[:5]})")
    return tensors


def load_matching_weights(module: nn.Module, ckpt_path: str | Path,
                          exclude_prefixes: tuple[str, ...] = ()) -> InitReport:
    """Copy into ``module`` every tensor of ``ckpt_path`` whose name and shape match (names starting with
    one of ``exclude_prefixes`` ignored on both sides); return the report. ValueError when nothing matches:
    an initialisation that silently loads nothing would otherwise go unnoticed."""
    source = {k: v for k, v in read_state_dict(ckpt_path).items() if not k.startswith(exclude_prefixes)}
    target = {k: v for k, v in module.state_dict().items() if not k.startswith(exclude_prefixes)}
    report = InitReport(path=str(ckpt_path), unexpected=[name for name in source if name not in target])
    for name, dst in target.items():
        if name not in source:
            report.missing.append(name)
        elif source[name].shape != dst.shape:
            report.skipped_shape.append((name, tuple(source[name].shape), tuple(dst.shape)))
        else:
            report.loaded.append(name)
    if not report.loaded:
        raise ValueError(f"init_from: no tensor of {ckpt_path} matches the model in name and shape "
                         f"(checkpoint names e.g. {list(source)[:3]}, model names e.g. {list(target)[:3]})")
    module.load_state_dict({name: source[name] for name in report.loaded}, strict=False)
    return report
