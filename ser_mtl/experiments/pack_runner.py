"""`fit_pack`: the fits of K (fold, repeat) runs of a cross-validation in one packed process.

For each run the configuration is built exactly as the cv runner's ``ser-mtl fit`` child builds it
(``ser_mtl/experiments/cv.py``: the config arguments plus ``--data.fold``, ``--seed_everything`` and
``--trainer.default_root_dir``), through `ser_mtl.lightning_cli.run_lightning_cli` with ``run=False``:
so each run's model is initialised under its own seed as in its unpacked fit, its datamodule is its
fold's, and ``max_epochs`` and the ``lr_schedule`` settings come from the same config. The K runs are
then trained together by `ser_mtl.models.packed_training.train_pack`, which leaves each run folder
with ``checkpoints/best.ckpt``, ``checkpoints/last.ckpt`` and ``packed_fit.json``; ``fit_done.json``
is written last, as the cv runner does after a fit, so the runner's test stage (``ser-mtl test
--ckpt_path best.ckpt`` -> ``test_metrics.json`` -> ``metrics.json``) follows unchanged. A packed fit
does not resume mid-way: a pack interrupted before ``fit_done.json`` trains again from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ser_mtl.callbacks import RestoreBestHalveLR
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.lightning_cli import run_lightning_cli
from ser_mtl.models.init_from import load_matching_weights
from ser_mtl.models.packed_training import RunSpec, train_pack

SCHEDULE_KEYS = ("monitor", "mode", "patience", "factor", "min_lr", "min_delta", "restore_optimizer_state",
                 "restore_best_on_train_end")


def fit_pack(config_args: Sequence[str], runs: Sequence[tuple[int, int, str | Path]],
             device: str | None = None) -> list[dict[str, Any]]:
    """Fit the runs ``(fold, seed, run_dir)`` of one config together; returns `train_pack`'s per-run results.

    ``device`` defaults to the config's ``trainer.accelerator`` (``cuda`` for gpu/cuda, else ``cpu``).
    """
    if not runs:
        raise ValueError("fit_pack: no runs to fit")
    clis = []
    for fold, seed, run_dir in runs:
        args = [*config_args, "--data.fold", str(fold), "--seed_everything", str(seed),
                "--trainer.default_root_dir", str(run_dir)]
        clis.append(run_lightning_cli(args, run=False))  # seeds, then builds the model: its unpacked init
    schedules = [[cb for cb in cli.trainer.callbacks if isinstance(cb, RestoreBestHalveLR)] for cli in clis]
    if any(len(s) != 1 for s in schedules):
        raise ValueError("fit_pack: every run's config must have exactly one lr_schedule (RestoreBestHalveLR)")
    schedule = {key: getattr(schedules[0][0], key) for key in SCHEDULE_KEYS}
    epochs = {cli.trainer.max_epochs for cli in clis}
    if len(epochs) != 1 or None in epochs or -1 in epochs:
        raise ValueError(f"fit_pack: packed runs need one finite trainer.max_epochs, got {sorted(map(str, epochs))}")
    if device is None:
        accelerator = str(clis[0].config.get("trainer.accelerator", "cpu"))
        device = "cuda" if accelerator in ("gpu", "cuda") else "cpu"
    models = []
    for cli in clis:
        if cli.model.hparams.init_from:
            load_matching_weights(cli.model, cli.model.hparams.init_from)
        models.append(cli.model)
    specs = [RunSpec(seed, run_dir) for _, seed, run_dir in runs]
    results = train_pack(specs, [cli.datamodule for cli in clis], epochs.pop(), schedule, device, models)
    for (_, _, run_dir), result in zip(runs, results):
        atomic_write_json(Path(run_dir) / "fit_done.json", {"resumed_from": None, "packed": True, **result})
    return results
