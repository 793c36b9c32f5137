"""Reading a checkpoint file safely: tensors and plain containers only, one clear error for anything else.

Every place that opens a checkpoint goes through `read_checkpoint`, ``--ckpt_path`` included (checked
before Lightning opens it, so a bad file is one line, not torch's traceback).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


class CheckpointError(ValueError):
    """A file that is not a usable ser-mtl checkpoint; the message names the file and the fix."""


def read_checkpoint(path: str | os.PathLike, require_lightning: bool = True) -> dict[str, Any]:
    """The checkpoint's dict, loaded on the CPU with ``weights_only=True`` (pickled code is refused, not
    run); with ``require_lightning`` it must hold ``state_dict`` and ``hyper_parameters``. Raises
    `CheckpointError` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):  # torch.save writes a zip archive (a pickle before 1.6)
        what = "an empty file" if not head else f"a file starting with {head!r}"
        raise CheckpointError(f"{path}: not a checkpoint ({what}; a PyTorch checkpoint is a zip archive); give a "
                              "run's checkpoints/best.ckpt or last.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused to load: the file holds pickled objects other than tensors "
                              f"({str(err).splitlines()[0]}); only checkpoints written by `ser-mtl fit` "
                              "load") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        reason = str(err).splitlines()[0].split(". ")[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or damaged?): {reason}; "
                              "use another checkpoint of the run (best.ckpt / last.ckpt) or train again") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, expected a checkpoint dict")
    if require_lightning and not ("state_dict" in checkpoint and "hyper_parameters" in checkpoint):
        raise CheckpointError(f"{path}: not a Lightning checkpoint of ser-mtl (expected the keys 'state_dict' and "
                              f"'hyper_parameters', found {sorted(map(str, checkpoint))[:6]}); was it written "
                              "by `ser-mtl fit`?")
    return checkpoint
