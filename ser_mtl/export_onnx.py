"""``ser-mtl export``: a trained model's emotion network as ONNX, with its front-end settings beside it.

The graph is input stage (if any) + encoder + emotion head + softmax (`MultiTaskAAE.emotion_posteriors`),
input ``segments`` (B, C, F, W) float32 features (C = 1 but for pretrained-model layers kept apart), output
``posteriors`` (B, K), with a dynamic batch axis; ``<stem>.frontend.json`` holds what `FrontEnd` needs to
prepare the segments: the extractor (``features``: class path and settings; for a pretrained model its name
or path, weights hash and layers, which are not in the graph), normalisation, segmenting and classes.
Checked on onnxruntime against PyTorch before reporting.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ser_mtl.command_line import command
from ser_mtl.inference import load_checkpoint
from ser_mtl.io_utils import atomic_write_text

OPSET = 18


class _Posteriors(nn.Module):
    """(B, C, F, W) segments -> (B, K) emotion posteriors: what is exported."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        return self.model.emotion_posteriors(segments)


def frontend_path(onnx_path: str | Path) -> Path:
    """Where the front-end settings of ``model.onnx`` go: ``model.frontend.json`` beside it."""
    path = Path(onnx_path)
    return path.with_name(path.stem + ".frontend.json")


def max_abs_difference(onnx_path: str | Path, model, inputs: torch.Tensor) -> float:
    """max |onnxruntime(inputs) - PyTorch(inputs)| over all posteriors of ``inputs`` (B, C, F, W)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["posteriors"], {"segments": inputs.numpy()})  # (B, C)
    with torch.no_grad():
        want = model.emotion_posteriors(inputs).numpy()  # (B, C)
    return float(np.abs(got - want).max())


@command(errors=(FileNotFoundError, ValueError))
def export(ckpt: str, out: str = "model.onnx", check_segments: int = 16, seed: int = 0) -> float:
    """Export the emotion network of ``ckpt`` to ONNX and check it against PyTorch with onnxruntime.

    Args:
        ckpt: a checkpoint written by ``ser-mtl fit``.
        out: the ``.onnx`` file; the front-end settings go to ``<stem>.frontend.json`` beside it.
        check_segments: random N(0, 1) segments (the scale of normalised inputs) compared after the export.
        seed: seed of those segments.

    Returns the maximum absolute difference of the posteriors (also printed).
    """
    model, frontend = load_checkpoint(ckpt, "cpu")
    shape = (model.input_channels, *model.input_size)  # (C, F, W)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(_Posteriors(model).eval(), (torch.zeros(2, *shape),), str(tmp),
                          input_names=["segments"], output_names=["posteriors"],  # segments (B, C, F, W)
                          dynamic_axes={"segments": {0: "batch"}, "posteriors": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    check = torch.randn(check_segments, *shape, generator=torch.Generator().manual_seed(seed))
    diff = max_abs_difference(tmp, model, check)
    tmp.replace(out_path)
    settings = {**frontend.state_dict(), "onnx": out_path.name,
                "input": f"segments (batch, {shape[0]}, {shape[1]}, {shape[2]}): (batch, channels, rows, segment_frames)",
                "output": "posteriors (batch, classes)", "min_std": 1e-5}
    atomic_write_text(frontend_path(out_path), json.dumps(settings, indent=2) + "\n")
    print(f"exported {ckpt} -> {out_path} (+ {frontend_path(out_path).name}); onnxruntime vs PyTorch on "
          f"{check_segments} segments: max abs diff {diff:.2e}")
    return diff
