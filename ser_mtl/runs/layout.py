"""The one owner of a cross-validation folder's layout: its file and folder names.

    DIR/cv.json                  the runner's record (configuration, base seed, grid)   RECORD_NAME
    DIR/summary.json             mean ± std over complete repeats                        SUMMARY_NAME
    DIR/fold{k}_rep{r}/          one run (run_dir_name)
        run.json                 what the run is (fold, repeat, seed[, init_from])       RUN_RECORD
        checkpoints/best.ckpt    the epoch chosen on validation; last.ckpt every epoch    best_checkpoint, last_checkpoint
        fit_record.json          the fit's selection and cost (FitRecord)                FIT_RECORD
        fit_done.json            the fit ended                                          FIT_DONE
        test_metrics.json        the test's scores (ResultWriter)                         TEST_METRICS
        predictions.csv          each test utterance's outputs (ResultWriter)            PREDICTIONS
        metrics.json             the run's record and scores, written last: done         METRICS_NAME
        unfinished.json          why a cluster task ended without the run done           UNFINISHED
    DIR/pretrain_rep{r}/         one pretraining (pretrain_dir_name)
    DIR/mistake.txt              a cluster task's configuration mistake; its array was cancelled   MISTAKE
    SWEEP/sweep.json             a sweep's settings, each a DIR                           SWEEP_NAME

The runners (``ser_mtl/runs/``), the analysis (``ser_mtl/analysis/``) and the callbacks import these names
instead of writing the literals; reading and validating ``metrics.json`` is ``analysis.summary.read_run_metrics``.
"""

from __future__ import annotations

from pathlib import Path

RECORD_NAME = "cv.json"
SUMMARY_NAME = "summary.json"
SWEEP_NAME = "sweep.json"
METRICS_NAME = "metrics.json"
RUN_RECORD = "run.json"
FIT_RECORD = "fit_record.json"
FIT_DONE = "fit_done.json"
TEST_METRICS = "test_metrics.json"
PREDICTIONS = "predictions.csv"
CHECKPOINTS = "checkpoints"
UNFINISHED = "unfinished.json"  # a cluster task's end without metrics.json: out of requeues, or failed
MISTAKE = "mistake.txt"  # DIR/mistake.txt: the first cluster task's configuration mistake (the array was cancelled)


def run_dir_name(fold: int, repeat: int) -> str:
    return f"fold{fold}_rep{repeat}"


def pretrain_dir_name(repeat: int) -> str:
    return f"pretrain_rep{repeat}"


def best_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / "best.ckpt"


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / "last.ckpt"
