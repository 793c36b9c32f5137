"""A pack's resume state: everything `train_pack` needs to go on where an interrupted pack stopped.

An unpacked fit resumes from its own ``last.ckpt``; a pack cannot resume from its runs' ``last.ckpt``
files, because they are written one after another and a kill between two of them leaves the runs at
different epochs, while a pack trains them in lockstep. So `train_pack` also writes ONE file for the
whole pack (``pack_state.pt`` beside the pack's ``pack.json``, ``ser_mtl/experiments/cv_pack.py``),
atomically, after every epoch's checkpoints and, when asked to stop (SLURM's SIGUSR1 warning), after
the batch in progress. It holds, for all K runs at once:

* the stacked weights and BatchNorm buffers (K, ...), the three packed optimizers' states, their
  per-run ``has_state`` flags and learning rates;
* each run's ``torch.Generator`` state (prior samples, dropout masks), ``active`` and ``diverged``;
* each run's schedule: the `RestoreBestHalveLR` state (best score and epoch, wait, restores, the
  best weights and optimizer states) and its stop epoch;
* where the pack is: the epoch to run next, the batches each run has already trained in it (0 at an
  epoch boundary; the samplers skip them, ``ser_mtl/data/sampling.py``), and each run's batch total.

The batch order of an epoch is a function of (run seed, epoch) and nothing else draws from a global
random stream, so a resumed pack takes the same batches and draws as the uninterrupted one and ends
with the same weights (tests/faults/test_pack_resume.py). ``spec`` identifies the pack (its config
arguments and runs): a state written for another pack is refused by `load_pack_state`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ser_mtl.callbacks import _to_cpu
from ser_mtl.checkpoint_io import read_checkpoint
from ser_mtl.io_utils import atomic_path
from ser_mtl.models.packed import PackedAAE
from ser_mtl.models.packed_schedule import PackedSchedule

FORMAT = "ser-mtl pack state 1"


class PackStateError(ValueError):
    """A ``pack_state.pt`` that cannot be resumed from (damaged, another format, another pack's)."""

STATE_NAME = "pack_state.pt"


def pack_state(pack: PackedAAE, sched: PackedSchedule, spec: Any, next_epoch: int,
               skip: Sequence[int], batches_done: Sequence[int]) -> dict[str, Any]:
    """The resume state (module docstring) of ``pack`` about to run epoch ``next_epoch``, whose first
    ``skip[k]`` batches run k has trained already; ``batches_done[k]``: its batches in all epochs."""
    optimizers = {name: _to_cpu({"state": opt.state, "has_state": opt.has_state, "lrs": list(opt.lrs)})
                  for name, opt in pack.optimizers.items()}
    return {
        "format": FORMAT, "spec": spec, "k": pack.k,
        "next_epoch": int(next_epoch), "skip": [int(s) for s in skip], "batches_done": [int(b) for b in batches_done],
        "params": _to_cpu(pack.params), "buffers": _to_cpu(pack.buffers), "optimizers": optimizers,
        "generators": [g.get_state() for g in pack.generators],
        "active": _to_cpu(pack.active), "diverged": _to_cpu(pack.diverged),
        "schedule": sched.state_dict(),
    }


def save_pack_state(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write ``state`` atomically: a kill while writing leaves the previous state, never a torn file."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


def read_pack_state(path: str | os.PathLike, spec: Any) -> dict[str, Any] | None:
    """The state in ``path`` if it exists and was written for ``spec``; None if there is none; ValueError
    (`PackStateError`, naming the file) if it is damaged, of another format or of another pack."""
    if not os.path.exists(path):
        return None
    try:
        state = read_checkpoint(path, require_lightning=False)
    except Exception as err:  # torch raises many kinds for a damaged file
        raise PackStateError(f"{path}: damaged pack state ({err!r}); delete it to train the pack from scratch") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PackStateError(f"{path}: not a pack state of format {FORMAT!r}; delete it to train the pack from scratch")
    if state.get("spec") != spec:
        raise PackStateError(f"{path}: written for another pack (its config arguments or runs differ from this one's); "
                         "delete it to train this pack from scratch")
    return state


@torch.no_grad()
def load_pack_state(pack: PackedAAE, sched: PackedSchedule, state: Mapping[str, Any]) -> None:
    """Put ``state`` (from `pack_state`, same pack shape) back into ``pack`` and ``sched``."""
    if int(state["k"]) != pack.k or set(state["params"]) != set(pack.params):
        raise ValueError(f"load_pack_state: a state of {state['k']} runs / other parameters does not fit this pack "
                         f"of {pack.k}")
    for mine, saved in ((pack.params, state["params"]), (pack.buffers, state["buffers"])):
        for n, t in saved.items():
            mine[n].copy_(t.to(mine[n].device, mine[n].dtype))
    for name, opt in pack.optimizers.items():
        saved = state["optimizers"][name]
        for n, st in opt.state.items():
            for key, buf in st.items():
                buf.copy_(saved["state"][n][key].to(buf.device, buf.dtype))
            opt.has_state[n].copy_(saved["has_state"][n].to(opt.has_state[n].device))
        for k, lr in enumerate(saved["lrs"]):
            opt.set_lr(k, lr)
    for g, saved in zip(pack.generators, state["generators"]):
        g.set_state(saved)
    pack.active.copy_(state["active"].to(pack.active.device))
    pack.diverged.copy_(state["diverged"].to(pack.diverged.device))
    sched.load_state_dict(state["schedule"])
