"""``--cv.plan``: what a cross-validation or sweep would cost, printed before anything trains.

Each distinct configuration's model is trained and validated for a few batches on the device its
configuration names (nothing is written but the feature store, which training needs anyway); (seconds per
training batch x training batches + seconds per evaluation batch x validation batches) per epoch x
``trainer.max_epochs``, plus the test's batches, is an upper bound on one fit's device-hours (early stopping
ends fits sooner). Under DDP each of the D devices serves 1/D of the batches, so the device-hours are the
same and the wall time 1/D of them. ``max_epochs`` null is Lightning's default of 1000 epochs; -1 has no bound,
and the plan says so instead of a number. Feature stores that are not built yet
are costed first (`store_costs`): the front-end is timed on a few utterances on the device it will run on,
and the corpus's audio hours give the build time and the disk it will take; the fit then builds them.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from typing import Any

import pytorch_lightning as pl

from ser_mtl.data.audio import load_audio
from ser_mtl.data.manifest import CorpusError
from ser_mtl.lightning_cli import run_lightning_cli
from ser_mtl.runs.lifecycle import say

LIGHTNING_DEFAULT_EPOCHS = 1000  # what Lightning trains with max_epochs None (and max_steps -1)


class _BatchClock(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []  # training batches
        self.eval_seconds: list[float] = []  # validation batches (a test batch costs the same forward passes)

    def on_train_batch_start(self, *args: Any) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self.start)

    def on_validation_batch_start(self, *args: Any) -> None:
        self.start = time.perf_counter()

    def on_validation_batch_end(self, *args: Any) -> None:
        self.eval_seconds.append(time.perf_counter() - self.start)


def epoch_bound(max_epochs: int | None) -> tuple[int | None, str]:
    """The epochs a fit trains at most, and how the plan names them: ``max_epochs``; None: Lightning's default
    (1000); -1 (or below): no bound (None)."""
    if max_epochs is None:
        return LIGHTNING_DEFAULT_EPOCHS, f"{LIGHTNING_DEFAULT_EPOCHS} epochs (Lightning's default for max_epochs null)"
    if max_epochs < 0:
        return None, f"no epoch bound (trainer.max_epochs {max_epochs})"
    return max_epochs, f"{max_epochs} epochs"


def fit_hours(train_batch_s: float, train_batches: int, eval_batch_s: float, val_batches: int, test_batches: int,
              epochs: int | None) -> float | None:
    """Device-hours of one fit at most: every epoch's training and validation, then the test; None unbounded.
    Independent of the number of DDP devices (each serves 1/D of the batches)."""
    if epochs is None:
        return None
    return ((train_batch_s * train_batches + eval_batch_s * val_batches) * epochs + eval_batch_s * test_batches) / 3600


def store_costs(data, sample: int = 8, seen: set | None = None) -> list[dict[str, Any]]:
    """For each feature store of the DataModule ``data`` not built yet (and not in ``seen``): its audio hours,
    the front-end's speed on ``sample`` utterances on its device (seconds of audio per second, after one
    warm-up), the hours to build it and its size on disk (float16 x rows x frames per second)."""
    costs, seen = [], seen if seen is not None else set()
    extractor, device = data.features, data.hparams.feature_device or data.features.default_device
    for name, store in data.feature_stores().items():
        if store.is_complete() or store.path in seen or not store.rows:
            continue
        seen.add(store.path)
        audio_s = sum(row.duration for row in store.rows)
        waves = []
        for row in store.rows[:sample + 1]:
            with contextlib.suppress(CorpusError):
                waves.append(load_audio(store.root / row.path, extractor.sample_rate))  # (T,)
        speed = None
        if len(waves) > 1:
            extractor.to(device).extract_batch(waves[:1])  # warm-up: loads a model, builds transforms
            start = time.perf_counter()
            extractor.extract_batch(waves[1:])  # float16 arrays on the CPU: the device has finished
            speed = sum(len(w) for w in waves[1:]) / extractor.sample_rate / (time.perf_counter() - start)
        gb = audio_s * extractor.frames_per_second * extractor.rows * 2 / 1e9  # before silence removal
        costs.append({"store": name, "path": str(store.path), "audio_hours": audio_s / 3600, "disk_gb": gb,
                      "audio_seconds_per_second": speed, "device": str(device),
                      "build_hours": audio_s / speed / 3600 if speed else None})
        say(f"feature store {name} ({store.path.name}, {type(extractor).__name__}): {audio_s / 3600:.3g} h of audio, "
            f"at most {gb:.3g} GB; " + (f"about {audio_s / speed / 3600:.3g} h to build on {device} ({speed:.3g} s of "
                                        f"audio per second over {len(waves) - 1} utterances)" if speed else
                                        "its speed could not be timed (no readable audio)")
            + "; the fit below builds it (or build it first: `ser-mtl cache` with the same config)")
    return costs


def time_fit(config_args: list[str], batches: int = 3, seen_stores: set | None = None) -> dict[str, Any]:
    """One fit's upper-bound device-hours for ``config_args`` (`fit_hours`): the medians of ``batches`` timed
    training and validation batches after one warm-up batch each, times the batches of the splits and the
    epochs (`epoch_bound`); ``fit_hours`` None when the epochs have no bound."""
    cli = run_lightning_cli([*config_args, "--trainer.logger", "false"], run=False)
    data, configured, clock = cli.datamodule, cli.trainer, _BatchClock()
    stores = store_costs(data, seen=seen_stores)
    with tempfile.TemporaryDirectory() as scratch:
        pl.Trainer(accelerator=configured.accelerator, devices=1, precision=configured.precision, max_epochs=1,
                   limit_train_batches=batches + 1, limit_val_batches=batches + 1, num_sanity_val_steps=0,
                   logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   use_distributed_sampler=False, callbacks=[clock], default_root_dir=scratch
                   ).fit(cli.model, datamodule=data)  # builds or opens the feature store (setup), once
    per_epoch, val_batches, test_batches = (len(data.train_dataloader()), len(data.val_dataloader()),
                                            len(data.test_dataloader()))
    per_batch = statistics.median(clock.seconds[1:] or clock.seconds)
    eval_batch = statistics.median(clock.eval_seconds[1:] or clock.eval_seconds or [0.0])
    epochs, epochs_text = epoch_bound(configured.max_epochs)
    return {"seconds_per_batch": per_batch, "batches_per_epoch": per_epoch, "max_epochs": epochs,
            "epochs_text": epochs_text, "devices": configured.num_devices, "eval_seconds_per_batch": eval_batch,
            "val_batches": val_batches, "test_batches": test_batches,
            "device": type(configured.accelerator).__name__.removesuffix("Accelerator").lower(),
            "fit_hours": fit_hours(per_batch, per_epoch, eval_batch, val_batches, test_batches, epochs),
            "stores": stores, "store_hours": sum(s["build_hours"] or 0.0 for s in stores)}


def estimate(plans: list[Any]) -> dict:
    """The fits and pretrainings of ``cv.CVPlan``s and an upper bound of their device-hours: ``time_fit`` of each
    plan's first run of each kind, times its runs."""
    hours, store_hours, seen = 0.0, 0.0, set()
    for plan in plans:
        for kind, runs in (("pretraining", plan.pretrainings), ("fit", plan.runs)):
            if runs:
                t = time_fit(list(runs[0].args), seen_stores=seen)
                hours = None if hours is None or t["fit_hours"] is None else hours + t["fit_hours"] * len(runs)
                store_hours += t["store_hours"]
                bound = "no upper bound" if t["fit_hours"] is None else f"at most {t['fit_hours']:.3g} h"
                ddp = (f"; {t['devices']} DDP devices share these batches, wall time 1/{t['devices']}"
                       if t["devices"] > 1 else "")
                say(f"{plan.out.name}: {len(runs)} {kind}(s) x {bound} ({t['seconds_per_batch']:.3g} s/batch on "
                    f"{t['device']} x {t['batches_per_epoch']} batches + {t['eval_seconds_per_batch']:.3g} s x "
                    f"{t['val_batches']} validation batches, x {t['epochs_text']}; + {t['test_batches']} test "
                    f"batches{ddp})")
    fits, pretrainings = sum(len(p.runs) for p in plans), sum(len(p.pretrainings) for p in plans)
    total = ("no upper bound of device-hours (trainer.max_epochs -1 trains until stopped)" if hours is None else
             f"at most {hours:.3g} device-hours (an upper bound: max_epochs without early stopping, with validation "
             "and test)")
    say(f"plan: {fits} fits and {pretrainings} pretrainings, {total}"
        + (f", plus about {store_hours:.3g} h to build the feature stores once" if store_hours else "")
        + "; nothing was trained")
    return {"fits": fits, "pretrainings": pretrainings, "device_hours": hours, "store_hours": store_hours}
