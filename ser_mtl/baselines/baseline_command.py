"""A classical reference on the network's own split: utterance features + a linear classifier.

Runbook::

    # the no-dependency default: spectrogram statistics + logistic regression, on the config's fold
    ser-mtl baseline --config configs/iemocap.yaml --baseline.out runs/baseline.json
    # the field's reference: eGeMAPSv02 functionals (88 per utterance; `pip install opensmile`)
    ser-mtl baseline --config configs/iemocap.yaml --baseline.features egemaps --baseline.classifier logreg
    # ComParE_2016 (6373) + linear SVM, every fold of data.scheme, for `ser-mtl report`
    ser-mtl baseline --config configs/iemocap.yaml --baseline.features compare \
        --baseline.classifier linear_svm --baseline.cv_out runs/iemocap_compare_svm

It reads the utterances, fold split and labels ``ser-mtl fit`` would use with the same arguments and
keeps the C with the best validation UA (ties: the smaller C). A network that does not beat this on
the same held-out speakers has not learnt more than these features carry.
"""

from __future__ import annotations

from ser_mtl.baselines.baseline import Classifier, Features, Stats, format_result, run_baseline
from ser_mtl.baselines.baseline_cv import run_baseline_cv
from ser_mtl.baselines.opensmile_features import FEATURE_SETS, Audio, BaselineError, import_opensmile
from ser_mtl.command_line import ForwardingCommand
from ser_mtl.lightning_cli import build_datamodule


def baseline(config_args: list[str], features: Features = "stats", stats: Stats = "mean_std",
             classifier: Classifier = "logreg", audio: Audio = "trimmed", c_grid: list[float] | None = None,
             out: str | None = None, predictions: str | None = None, cv_out: str | None = None,
             folds: list[int] | None = None, repeats: int = 1, base_seed: int = 0, label: str | None = None) -> dict:
    """``ser-mtl baseline``: one fold (the config's ``data.fold``) or, with ``cv_out``, every fold.

    Args:
        config_args: the ``ser-mtl fit`` arguments whose data the baseline uses (``--config F --data.*``).
        features: ``stats`` (per-row mean/std of log-spectrogram frames and deltas), ``egemaps`` (openSMILE
            eGeMAPSv02, 88) or ``compare`` (ComParE_2016, 6373); openSMILE: ``pip install opensmile``.
        stats: for ``stats``: ``mean_std`` (4 x F) or ``std`` (2 x F, blind to level and mean spectrum).
        classifier: ``logreg`` or ``linear_svm`` (class-balanced, standardised features).
        audio: what openSMILE reads: the silence-``trimmed`` samples of the network's features, or the ``raw`` file.
        c_grid: inverse regularisation strengths tried; the best validation UA wins (default 1e-4 ... 10).
        out: write the one-fold result to this JSON file (the keys of a run's test_metrics.json, plus C ...).
        predictions: write the one-fold test predictions to this CSV file.
        cv_out: run every fold of ``data.scheme`` into this folder, which ``ser-mtl report`` shows too.
        folds: with ``cv_out``: only these folds (default: all).
        repeats: with ``cv_out``: repeats per fold; only ``linear_svm`` has randomness, ``logreg`` takes 1.
        base_seed: with ``cv_out``: run seeds are derived from it as in ``ser-mtl cv``.
        label: with ``cv_out``: the row name in reports (default e.g. ``eGeMAPS + LogReg``).
    """
    options = {"features": features, "stats": stats, "classifier": classifier, "audio": audio, "c_grid": c_grid}
    if features in FEATURE_SETS:
        import_opensmile()  # the one-line hint before any corpus is read
    if cv_out:
        return run_baseline_cv(config_args, cv_out, options, folds, repeats, base_seed, label)
    datamodule = build_datamodule(config_args)
    print(datamodule.describe())
    result = run_baseline(datamodule, out, predictions=predictions, **options)
    print(format_result(result))
    return result


def _baseline(options, config_args: list[str]) -> None:
    baseline(config_args, **options.baseline.as_dict())


baseline_main = ForwardingCommand(
    "ser-mtl baseline", ("--baseline.",), _baseline, __doc__, errors=(BaselineError,),
    add_options=lambda parser: parser.add_function_arguments(baseline, "baseline", as_group=False,
                                                             skip={"config_args"}))
