"""Every fold of ``data.scheme`` for the classical baseline, in the cv folder format ``ser-mtl report`` reads.

``--baseline.cv_out DIR`` is laid out as ``ser-mtl cv``'s (``ser_mtl.runs.cv``), with a ``baseline`` entry
in ``cv.json`` that makes ``ser-mtl report`` show it beside the network. Each run's ``metrics.json`` is
written last; a re-run skips the folds that have it. Repeats are for the linear SVM only: liblinear
takes the run's seed as ``random_state``; logistic regression (lbfgs) has no randomness.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ser_mtl.analysis.summary import (
    METRICS_NAME,
    RECORD_NAME,
    aggregate,
    read_record,
    read_run_metrics,
    run_dir_name,
)
from ser_mtl.baselines.baseline import C_GRID, baseline_label, run_baseline
from ser_mtl.baselines.opensmile_features import BaselineError
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.layout import PREDICTIONS
from ser_mtl.runs.lifecycle import derive_seed
from ser_mtl.runs.record import config_files

_METRIC_KEYS = ("wa", "ua", "macro_f1", "n_utterances", "classes", "confmat", "C", "val_ua", "features", "classifier",
                "n_features")


def data_record(datamodule) -> dict[str, Any]:
    """The datamodule's ``data.*`` settings as JSON (``cv.json``'s ``resolved``, read by the report)."""
    data = {**dict(datamodule.hparams), "features": datamodule.features.config()}
    return json.loads(json.dumps(data, default=str))


def baseline_args(options: dict[str, Any]) -> list[str]:
    """The ``--baseline.*`` settings as arguments, in a fixed order (part of the record's ``config_args``)."""
    return [arg for key in sorted(options) for arg in (f"--baseline.{key}", json.dumps(options[key]))]


def _check_record(out: Path, record: dict[str, Any]) -> None:
    """Refuse a folder of the network's runs, or of a baseline with other settings."""
    previous = read_record(out)
    if previous is None:
        return
    if not isinstance(previous.get("baseline"), dict):
        raise BaselineError(f"{out / RECORD_NAME}: this folder holds `ser-mtl cv` runs of the network, not a "
                            f"baseline; use another --baseline.cv_out")
    for key in ("config_args", "base_seed", "config_files", "baseline"):
        if previous.get(key) != record[key]:
            raise BaselineError(f"{out / RECORD_NAME}: this folder holds a baseline with a different {key} "
                                f"({previous.get(key)!r} != {record[key]!r}); use another --baseline.cv_out, "
                                f"or delete {out / RECORD_NAME} if the change is deliberate")


def run_baseline_cv(config_args: list[str], out: str, options: dict[str, Any], folds: list[int] | None = None,
                    repeats: int = 1, base_seed: int = 0, label: str | None = None) -> dict:
    """Run the baseline on every (fold, repeat) into ``out`` and write ``out/summary.json``; returns the summary.

    ``config_args`` are the ``ser-mtl fit`` arguments (without ``--data.fold``), ``options`` are
    ``run_baseline``'s ``features``, ``stats``, ``classifier``, ``audio``, ``c_grid``; ``out`` (its
    ``cv_out``), ``folds``, ``repeats``, ``base_seed`` and ``label`` are ``ser-mtl baseline``'s.
    """
    from ser_mtl.lightning_cli import build_datamodule

    if any(arg.split("=", 1)[0] == "--data.fold" for arg in config_args):
        raise BaselineError("--data.fold is set per run by --baseline.cv_out; use --baseline.folds instead")
    if repeats < 1:
        raise BaselineError(f"--baseline.repeats must be >= 1, got {repeats}")
    if repeats > 1 and options["classifier"] == "logreg":
        raise BaselineError(f"--baseline.repeats {repeats}: logistic regression has no randomness, every repeat "
                            f"would give the same numbers; use 1 (or --baseline.classifier linear_svm)")
    options = {**options, "c_grid": list(options.get("c_grid") or C_GRID)}
    first = build_datamodule(config_args)
    folds = list(range(first.num_folds)) if folds is None else list(folds)
    if not folds or len(set(folds)) != len(folds) or not all(0 <= f < first.num_folds for f in folds):
        raise BaselineError(f"--baseline.folds must be distinct folds of 0..{first.num_folds - 1} "
                            f"({first.hparams.scheme}), got {folds}")
    name = baseline_label(options["features"], options["classifier"], options["stats"])
    # only the settings that act: `stats` for the statistics, `audio` for openSMILE
    settings = {k: v for k, v in options.items() if k != ("audio" if options["features"] == "stats" else "stats")}
    record = {"config_args": [*config_args, *baseline_args(settings)], "base_seed": base_seed,
              "config_files": config_files(config_args), "label": label or name,
              "baseline": {**settings, "label": name}, "resolved": {"data": data_record(first)}}
    out_path = Path(out)
    _check_record(out_path, record)
    old_grid = (read_record(out_path) or {}).get("grid", {})
    record["grid"] = {"folds": sorted(set(old_grid.get("folds", [])) | set(folds)),
                      "repeats": sorted(set(old_grid.get("repeats", [])) | set(range(repeats)))}
    out_path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_path / RECORD_NAME, record)
    print(first.describe())
    for repeat in range(repeats):
        for fold in folds:
            run_dir = out_path / run_dir_name(fold, repeat)
            if (run_dir / METRICS_NAME).is_file():
                read_run_metrics(run_dir / METRICS_NAME)  # a damaged file is named, not silently re-used
                print(f"[baseline] fold {fold} repeat {repeat}: done before, skipped")
                continue
            datamodule = first if fold == first.hparams.fold else build_datamodule(
                [*config_args, "--data.fold", str(fold)])
            seed = derive_seed(base_seed, fold, repeat)
            result = run_baseline(datamodule, predictions=str(run_dir / PREDICTIONS), seed=seed, **options)
            metrics = {"fold": fold, "repeat": repeat, "seed": seed, **{k: result[k] for k in _METRIC_KEYS}}
            atomic_write_json(run_dir / METRICS_NAME, metrics)
            extracted = f"  ({result['n_extracted']} utterances extracted)" if "audio" in result else ""
            print(f"[baseline] fold {fold} repeat {repeat}: C={result['C']:g}  WA {100 * result['wa']:.1f} %  "
                  f"UA {100 * result['ua']:.1f} %{extracted}")
    return aggregate(str(out_path))
