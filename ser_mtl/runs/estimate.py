"""``--cv.plan``: what a cross-validation or sweep would cost, printed before anything trains.

Each distinct configuration's model is trained for a few batches on the device its configuration
names (nothing is written but the feature store, which training needs anyway); seconds per batch x
training batches per epoch x ``trainer.max_epochs`` x devices is an upper bound on one fit (early
stopping ends fits sooner; validation and test are not counted).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import pytorch_lightning as pl

from ser_mtl.lightning_cli import run_lightning_cli
from ser_mtl.runs.lifecycle import say


class _BatchClock(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def time_fit(config_args: list[str], batches: int = 3) -> dict[str, Any]:
    """One fit's upper-bound seconds for ``config_args``: the median of ``batches`` timed training batches
    after one warm-up batch, times the batches of an epoch, ``trainer.max_epochs`` and the devices."""
    cli = run_lightning_cli([*config_args, "--trainer.logger", "false"], run=False)
    data, configured, clock = cli.datamodule, cli.trainer, _BatchClock()
    with tempfile.TemporaryDirectory() as scratch:
        pl.Trainer(accelerator=configured.accelerator, devices=1, precision=configured.precision, max_epochs=1,
                   limit_train_batches=batches + 1, limit_val_batches=0, num_sanity_val_steps=0,
                   logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   use_distributed_sampler=False, callbacks=[clock], default_root_dir=scratch
                   ).fit(cli.model, datamodule=data)  # builds or opens the feature store (setup), once
    per_epoch = len(data.train_dataloader())
    per_batch = statistics.median(clock.seconds[1:] or clock.seconds)
    epochs, devices = configured.max_epochs or 1, configured.num_devices
    return {"seconds_per_batch": per_batch, "batches_per_epoch": per_epoch, "max_epochs": epochs, "devices": devices,
            "device": type(configured.accelerator).__name__.removesuffix("Accelerator").lower(),
            "fit_hours": per_batch * per_epoch * epochs * devices / 3600}


def estimate(plans: list[Any]) -> dict:
    """The fits and pretrainings of ``cv.CVPlan``s and an upper bound of their device-hours: ``time_fit`` of each
    plan's first run of each kind, times its runs."""
    hours = 0.0
    for plan in plans:
        for kind, runs in (("pretraining", plan.pretrainings), ("fit", plan.runs)):
            if runs:
                t = time_fit(list(runs[0].args))
                hours += t["fit_hours"] * len(runs)
                say(f"{plan.out.name}: {len(runs)} {kind}(s) x at most {t['fit_hours']:.3g} h ({t['seconds_per_batch']:.3g}"
                    f" s/batch on {t['device']} x {t['batches_per_epoch']} batches x {t['max_epochs']} epochs)")
    fits, pretrainings = sum(len(p.runs) for p in plans), sum(len(p.pretrainings) for p in plans)
    say(f"plan: {fits} fits and {pretrainings} pretrainings, at most {hours:.3g} device-hours (an upper bound: "
        "max_epochs without early stopping; validation and test not counted); nothing was trained")
    return {"fits": fits, "pretrainings": pretrainings, "device_hours": hours}
