"""A classical reference on the same split: utterance statistics + logistic regression.

``ser-mtl baseline --config FILE [--data.* overrides]`` reads the very features, fold split and
labels that ``ser-mtl fit`` would use, describes every utterance by the per-row mean and standard
deviation of its log-spectrogram frames and of their first differences (4 x F numbers; with
``--baseline.stats std`` only the two standard deviations, 2 x F, which ignore the recording level
and the speaker's average spectrum), fits a
standardised multinomial logistic regression (class-balanced, C chosen on the validation split)
on the training utterances and prints WA/UA on the test utterances. A network that does not beat
this on the same held-out speakers has not learnt more than average spectra.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ser_mtl.command_line import ForwardingCommand
from ser_mtl.io_utils import atomic_write_json

Stats = Literal["mean_std", "std"]
STATS = get_args(Stats)


def utterance_statistics(frames: np.ndarray, stats: str = "mean_std") -> np.ndarray:
    """(F, T) log spectrogram -> (4F,) mean and std of the frames and of their frame-to-frame deltas,
    or with ``stats="std"`` (2F,) the two standard deviations only."""
    if stats not in STATS:
        raise ValueError(f"utterance_statistics: stats must be one of {STATS}, got {stats!r}")
    x = frames.astype(np.float64)
    delta = np.diff(x, axis=1) if x.shape[1] > 1 else np.zeros_like(x)
    if stats == "std":
        return np.concatenate([x.std(1), delta.std(1)])
    return np.concatenate([x.mean(1), x.std(1), delta.mean(1), delta.std(1)])


def _features(store, rows, indices, label_scheme, stats: str = "mean_std") -> tuple[np.ndarray, np.ndarray]:
    keep = [i for i in indices if store.lengths[i] > 0 and label_scheme.encode(rows[i]) >= 0]
    x = np.stack([utterance_statistics(store.frames(i), stats) for i in keep])  # (U, 4F) or (U, 2F)
    y = np.array([label_scheme.encode(rows[i]) for i in keep])  # (U,)
    return x, y


def run_baseline(datamodule, out: str | None = None, stats: Stats = "mean_std") -> dict:
    """Fit on the training split, pick C on validation, report WA/UA on test (fractions).

    Args:
        datamodule: the ``SERDataModule`` of the configuration (its features, split and labels).
        out: also write the result (WA, UA, C, classes ...) to this JSON file.
        stats: per utterance, ``mean_std`` of the frames and their deltas (4 x F numbers) or only their
            ``std`` (2 x F, blind to the recording level and the speaker's average spectrum).
    """
    datamodule.prepare_data()
    datamodule.setup("fit")
    rows, split = datamodule.rows, datamodule.split
    eval_rows, _ = datamodule._eval_source()
    eval_store = datamodule.stores["target" if datamodule.target_rows else "primary"]
    scheme = datamodule.label_scheme
    x_train, y_train = _features(datamodule.stores["primary"], rows, split.train, scheme, stats)
    x_val, y_val = _features(eval_store, eval_rows, split.val, scheme, stats)
    x_test, y_test = _features(eval_store, eval_rows, split.test, scheme, stats)
    best = None
    for c in (0.001, 0.01, 0.1, 1.0, 10.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000))
        model.fit(x_train, y_train)
        score = balanced_accuracy_score(y_val, model.predict(x_val))
        if best is None or score > best[0]:
            best = (score, c, model)
    _, c, model = best
    pred = model.predict(x_test)
    result = {"wa": float(accuracy_score(y_test, pred)), "ua": float(balanced_accuracy_score(y_test, pred)),
              "n_utterances": len(y_test), "C": c, "val_ua": float(best[0]),
              "features": ("per-row mean/std" if stats == "mean_std" else "per-row std")
              + " of log-spectrogram frames and deltas", "stats": stats, "classes": datamodule.class_names}
    if out:
        atomic_write_json(out, result)
    return result


def _baseline(options, config_args: list[str]) -> None:
    from ser_mtl.lightning_cli import build_datamodule

    datamodule = build_datamodule(config_args)
    print(datamodule.describe())
    stats = options.baseline.stats
    result = run_baseline(datamodule, options.baseline.out, stats)
    print(f"baseline (utterance statistics [{stats}] + logistic regression, C={result['C']}): "
          f"WA {100 * result['wa']:.2f} %  UA {100 * result['ua']:.2f} %  on {result['n_utterances']} test utterances")


baseline_main = ForwardingCommand(
    "ser-mtl baseline", ("--baseline.",), _baseline, __doc__,
    add_options=lambda parser: parser.add_function_arguments(run_baseline, "baseline", as_group=False,
                                                             skip={"datamodule"}))
