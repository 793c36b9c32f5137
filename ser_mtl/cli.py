"""The ``ser-mtl`` command: LightningCLI's fit/validate/test/predict plus the data and experiment tools.

Runbook::

    ser-mtl synth --out demo                                  # small synthetic corpus, real layouts
    ser-mtl manifest --corpus iemocap --root DIR --out m.csv  # one row per utterance
    ser-mtl folds --manifest m.csv --scheme loso --out folds.csv
    ser-mtl cache --config configs/iemocap.yaml               # feature store ahead of training
    ser-mtl fit  --config configs/iemocap.yaml --data.fold 0 --trainer.default_root_dir runs/f0
    ser-mtl test --config configs/iemocap.yaml --data.fold 0 --trainer.default_root_dir runs/f0 \
        --ckpt_path runs/f0/checkpoints/best.ckpt            # WA/UA table + predictions.csv
    ser-mtl classify --ckpt runs/f0/checkpoints/best.ckpt --inputs my_wavs/ --out preds.csv
    ser-mtl cv --config configs/iemocap.yaml --cv.repeats 10 --cv.out runs/cv
    ser-mtl compare runs/stl runs/cv --out cmp.json           # paired difference + test, later minus first
    ser-mtl report runs/cv --out report/

Multi-GPU: ``--trainer.strategy ddp_find_unused_parameters_true --trainer.devices N``.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module, function, one-line help), run by ser_mtl.command_line. Imported only when run, so
# `ser-mtl --help` is fast and a command whose module is missing leaves the others working.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("ser_mtl.data_commands", "synth", "write the synthetic demo corpus (IEMOCAP + LibriSpeech layouts)"),
    "manifest": ("ser_mtl.data_commands", "manifest", "read a corpus into a manifest CSV"),
    "folds": ("ser_mtl.data_commands", "folds", "write the cross-validation folds of a manifest"),
    "cache": ("ser_mtl.cache_command", "cache_main", "build the feature stores of a config ahead of training"),
    "classify": ("ser_mtl.commands", "classify", "emotion probabilities for audio files with a trained model"),
    "export": ("ser_mtl.export_onnx", "export", "a trained model as an ONNX file"),
    "cv": ("ser_mtl.runs.cv_command", "cv_main", "cross-validation: folds x repeats of fit + test, resumable"),
    "sweep": ("ser_mtl.runs.sweep", "sweep_main", "one cross-validation per value of a parameter"),
    "baseline": ("ser_mtl.baselines.baseline_command", "baseline_main",
                 "utterance statistics + logistic regression on the same split (a reference)"),
    "aggregate": ("ser_mtl.analysis_commands", "aggregate_main", "summarise finished cross-validation runs"),
    "compare": ("ser_mtl.analysis_commands", "compare_main",
                "paired differences and tests (UA, WA) between cv folders over matching runs"),
    "report": ("ser_mtl.analysis_commands", "report_main", "Markdown tables and plots from cv summaries"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _usage() -> str:
    lines = ["usage: ser-mtl COMMAND [options]   (ser-mtl COMMAND --help for the options)", "",
             "training and evaluation (LightningCLI):",
             "  fit / validate / test / predict   train, validate, test (WA/UA, predictions.csv), predict",
             "", "tools:"]
    lines += [f"  {name:<10} {text}" for name, (_, _, text) in COMMANDS.items()]
    return "\n".join(lines)


def _load(command: str):
    module_name, function, _ = COMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:  # a dependency of the command is missing: say which, as Python does
            raise
        print(f"ser-mtl: command {command!r} is not available ({module_name} is missing)", file=sys.stderr)
        raise SystemExit(2) from err
    return getattr(module, function)


def num_folds(config_args: list[str]) -> int:
    """The folds of ``data.scheme`` for ``ser-mtl fit`` arguments (the cv runner's check before its runs): the
    DataModule is built, so a mistake in the data settings raises here (one line in ``ser-mtl cv``)."""
    from ser_mtl.lightning_cli import (
        build_datamodule,  # torch and Lightning: only when asked
        user_mistake,
    )

    try:
        return int(build_datamodule(config_args).num_folds)
    except Exception as err:
        mistake = user_mistake(err)
        if mistake is None:
            raise
        raise ValueError(str(mistake)) from err  # the mistake's own line (LightningCLI may have wrapped it)


def main(args: list[str] | None = None) -> None:
    """Run one ``ser-mtl`` subcommand; ``args`` defaults to ``sys.argv[1:]``. A user's mistake ends it with
    one line and exit status 1; ``SER_MTL_TRACEBACK=1`` raises the error itself, with its traceback."""
    args = list(sys.argv[1:] if args is None else args)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return
    command, rest = args[0], args[1:]
    try:
        if command in LIGHTNING_COMMANDS:
            from ser_mtl.command_line import exit_on
            from ser_mtl.lightning_cli import one_line_mistakes, run_lightning_cli

            prog = f"ser-mtl {command}"
            # one line for a user's mistake (one_line_mistakes) or a full disk (exit_on), as for every other command
            with exit_on(prog, ()), one_line_mistakes(prog):
                run_lightning_cli(args)
        elif command in COMMANDS:
            from ser_mtl.command_line import run_command

            run_command(_load(command), rest, f"ser-mtl {command}")
        else:
            print(f"ser-mtl: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
            raise SystemExit(2)
    except SystemExit as exit_:
        error = exit_.__cause__ if exit_.code == 1 and os.environ.get("SER_MTL_TRACEBACK") == "1" else None
        if error is None:
            raise
    else:
        return
    raise error  # outside the handler, so that the traceback is the error's own, not a SystemExit's


if __name__ == "__main__":
    main()
