"""``--cv.plan``: what a cross-validation or sweep would cost, printed before anything trains.

Each distinct configuration's model is trained for a few batches on the device its configuration
names (nothing is written but the feature store, which training needs anyway); seconds per batch x
training batches per epoch x ``trainer.max_epochs`` x devices is an upper bound on one fit (early
stopping ends fits sooner; validation and test are not counted). Feature stores that are not built yet
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


class _BatchClock(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self.start)


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
    """One fit's upper-bound seconds for ``config_args``: the median of ``batches`` timed training batches
    after one warm-up batch, times the batches of an epoch, ``trainer.max_epochs`` and the devices."""
    cli = run_lightning_cli([*config_args, "--trainer.logger", "false"], run=False)
    data, configured, clock = cli.datamodule, cli.trainer, _BatchClock()
    stores = store_costs(data, seen=seen_stores)
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
            "fit_hours": per_batch * per_epoch * epochs * devices / 3600, "stores": stores,
            "store_hours": sum(s["build_hours"] or 0.0 for s in stores)}


def estimate(plans: list[Any]) -> dict:
    """The fits and pretrainings of ``cv.CVPlan``s and an upper bound of their device-hours: ``time_fit`` of each
    plan's first run of each kind, times its runs."""
    hours, store_hours, seen = 0.0, 0.0, set()
    for plan in plans:
        for kind, runs in (("pretraining", plan.pretrainings), ("fit", plan.runs)):
            if runs:
                t = time_fit(list(runs[0].args), seen_stores=seen)
                hours += t["fit_hours"] * len(runs)
                store_hours += t["store_hours"]
                say(f"{plan.out.name}: {len(runs)} {kind}(s) x at most {t['fit_hours']:.3g} h ({t['seconds_per_batch']:.3g}"
                    f" s/batch on {t['device']} x {t['batches_per_epoch']} batches x {t['max_epochs']} epochs)")
    fits, pretrainings = sum(len(p.runs) for p in plans), sum(len(p.pretrainings) for p in plans)
    say(f"plan: {fits} fits and {pretrainings} pretrainings, at most {hours:.3g} device-hours (an upper bound: "
        "max_epochs without early stopping; validation and test not counted)"
        + (f", plus about {store_hours:.3g} h to build the feature stores once" if store_hours else "")
        + "; nothing was trained")
    return {"fits": fits, "pretrainings": pretrainings, "device_hours": hours, "store_hours": store_hours}
