"""Parameter sweeps: one cross-validation per setting (``ser-mtl sweep``).

    ser-mtl sweep --config configs/iemocap.yaml --model.beta 0.5 --sweep.param model.alpha \
        --sweep.values 0.1,0.2,0.3 --cv.repeats 10 --cv.out runs/alpha     # several: --sweep.mode zip | grid

Each setting is a cv folder ``DIR/<param>=<value>[,...]/`` with the same ``--cv.*`` options and base
seed (common random numbers: settings differ only in the swept value, appended last so it wins).
Their runs go through one pool (``--cv.jobs``) or one SLURM job array. ``DIR/sweep.json`` lists
setting -> folder -> summary. A sweep of ``model.alpha``/``model.beta`` that cannot change the
training under Adam is refused, a weak one warned about (``ser_mtl.runs.loss_weights``). With
``--cv.pretrain``, a sweep over ``data.aux_speakers`` pretrains each setting on the same N speakers
(``--data.speakers N``; N = 0: no pretraining), as Figure 4a does.
"""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from ser_mtl.analysis.selection import select_on_validation
from ser_mtl.analysis.summary import SUMMARY_NAME, SWEEP_NAME, format_value, sweep_cost
from ser_mtl.command_line import ForwardingCommand
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.cluster import ClusterOptions
from ser_mtl.runs.cv import execute, finish, plan_cv, submit
from ser_mtl.runs.cv_command import add_cv_arguments, cv_kwargs
from ser_mtl.runs.errors import CVError, RunsFailed
from ser_mtl.runs.estimate import estimate
from ser_mtl.runs.loss_weights import LossWeightError, check_loss_weight_sweep
from ser_mtl.runs.stages import CLIBackend

MODES = ("zip", "grid")


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; sweeps want it as the number it spells."""
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return float(value) if isinstance(value, str) and _FLOAT.match(value) else value


def parse_list(text: str | list) -> list:
    """A YAML/JSON list (``[0.1, 0.2]``) or a comma list (``0.1,0.2``); items are YAML scalars."""
    if isinstance(text, list):
        return text
    text = text.strip()
    if text.startswith("["):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise CVError(f"{text!r}: not a valid YAML list ({err})") from err
        if not isinstance(value, list):
            raise CVError(f"{text!r}: expected a list")
        return _numbers(value)
    return [_numbers(yaml.safe_load(part.strip())) for part in text.split(",") if part.strip()]


def sweep_settings(params: list[str], values: list, mode: str = "zip") -> list[dict[str, Any]]:
    """The settings, each ``{param: value}``. Several parameters, ``zip``: ``values`` lists settings, one value
    per parameter each; ``grid``: one value list per parameter, their Cartesian product (first slowest)."""
    if mode not in MODES:
        raise CVError(f"--sweep.mode {mode!r}: expected one of {MODES}")
    if not params:
        raise CVError("--sweep.param: name at least one parameter, e.g. model.alpha")
    if not values:
        raise CVError("--sweep.values: give at least one value")
    if len(params) == 1:
        return [{params[0]: v} for v in values]
    if mode == "grid":
        if len(values) != len(params) or not all(isinstance(v, list) and v for v in values):
            raise CVError(f"--sweep.mode grid with {len(params)} parameters needs {len(params)} non-empty value "
                          f"lists, one per parameter; got {values!r}")
        return [dict(zip(params, combo)) for combo in itertools.product(*values)]
    for i, setting in enumerate(values):
        if not isinstance(setting, list) or len(setting) != len(params):
            raise CVError(f"--sweep.values item {i} ({setting!r}): zip mode needs one value per parameter "
                          f"({', '.join(params)}), e.g. [[0.3,0.7],[0.4,0.6]]")
    return [dict(zip(params, setting)) for setting in values]


def _dir_value(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(_dir_value(v) for v in value)
    return format_value(value)


def setting_dirname(setting: dict[str, Any]) -> str:
    """``model.alpha=0.4,model.beta=0.6``, ``model.tasks=emotion+gender``; other characters than letters,
    digits and ``._=+,-`` become ``_``."""
    name = ",".join(f"{k}={_dir_value(v)}" for k, v in setting.items())
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", name)


def setting_args(setting: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in setting.items():
        args += [f"--{key.removeprefix('--')}", format_value(value)]
    return args


def setting_pretrain(pretrain: list[str] | None, setting: dict[str, Any]) -> list[str] | None:
    """A setting's pretraining arguments: ``--data.speakers N`` appended when it sets ``data.aux_speakers``;
    None (no pretraining: there is no speaker to pretrain on) for N = 0."""
    if pretrain is None or "data.aux_speakers" not in setting:
        return pretrain
    if setting["data.aux_speakers"] == 0:
        return None
    return [*pretrain, "--data.speakers", format_value(setting["data.aux_speakers"])]


def loss_weight_warnings(config_args: list[str], params: list[str], settings: list[dict[str, Any]],
                         backend: Any = None) -> list[str]:
    """`check_loss_weight_sweep` on the resolved configuration: once, or per setting when the sweep also
    changes other parameters (which may switch the optimizer or the tasks). ``CVError`` for a refusal."""
    if not {"model.alpha", "model.beta"} & set(params):
        return []
    if backend is None:
        backend = CLIBackend()
    others = set(params) - {"model.alpha", "model.beta"}
    arg_lists = [[*config_args, *setting_args(s)] for s in settings] if others else [config_args]
    warnings: list[str] = []
    try:
        for args in arg_lists:
            warnings += [w for w in check_loss_weight_sweep(params, backend.resolve_config(args)) if w not in warnings]
    except LossWeightError as err:
        raise CVError(str(err)) from err
    return warnings


def run_sweep(config_args: list[str], params: list[str], values: list, out: str, mode: str = "zip", *,
              folds: list[int] | None = None, repeats: int = 1, base_seed: int = 0, label: str | None = None,
              pretrain: list[str] | None = None, backend: Any = None, slurm: bool = False,
              cluster_options: ClusterOptions | None = None, executor: Any = None, plan_only: bool = False,
              **local: Any) -> dict:
    """One cross-validation per setting into ``out/<setting>/``; writes and returns ``sweep.json``'s content.

    Every setting's runs are planned first (``plan_cv``), then run together: on this machine through
    one pool (``local``: ``execute``'s jobs, devices, in_process, fail_fast), or on SLURM as one job
    array over every setting's runs. A failed run does not stop the others; ``RunsFailed`` at the end
    names the settings that had failures.
    """
    params = [p.removeprefix("--") for p in params]
    for param in params:
        if any(a.split("=", 1)[0] == f"--{param}" for a in config_args):
            print(f"[sweep] note: --{param} in the arguments is overridden by the swept values", file=sys.stderr)
    settings = sweep_settings(params, values, mode)
    names = [setting_dirname(s) for s in settings]
    if len(set(names)) != len(names):
        raise CVError(f"two settings map to the same folder: {names}")
    warnings = loss_weight_warnings(config_args, params, settings, backend)
    for warning in warnings:
        print(f"[sweep] warning: {warning}", file=sys.stderr)
    out_path = Path(out)
    entries = [{"values": s, "dir": n, "summary": f"{n}/{SUMMARY_NAME}"} for s, n in zip(settings, names)]
    record = {"params": params, "mode": mode, "config_args": list(config_args), "settings": entries}
    if pretrain is not None:
        record["pretrain"] = list(pretrain)
        for entry, setting in zip(entries, settings):
            entry["pretrain"] = setting_pretrain(pretrain, setting)
    if warnings:
        record["warnings"] = warnings
    plans = [plan_cv([*config_args, *setting_args(s)], folds, repeats, out_path / n, base_seed, label,
                     setting_pretrain(pretrain, s), backend, write=not plan_only) for s, n in zip(settings, names)]
    if plan_only:
        return estimate(plans)
    atomic_write_json(out_path / SWEEP_NAME, record)
    if slurm or executor is not None:
        record["submitted"] = submit(plans, cluster_options or ClusterOptions(), out_path.absolute() / "slurm",
                                     executor)
        atomic_write_json(out_path / SWEEP_NAME, record)  # the job ids, for the record
        return record
    results = execute(plans, backend, **local)
    failed = []
    for plan in plans:
        try:
            finish(plan, results)
        except RunsFailed as err:
            print(f"[sweep] {plan.out.name} FAILED: {err}", file=sys.stderr)
            failed.append(plan.out.name)
    select_on_validation(out_path)
    if (cost := sweep_cost(out_path)) is not None:
        print(f"[sweep] {out_path}: {cost['fits']} fits over {cost['settings']} settings, "
              f"{cost['device_hours']:.3f} device-hours in all")
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(settings)} settings had failed runs: {', '.join(failed)}; "
                         "re-run the same command to retry them")
    return record


def add_sweep_arguments(parser) -> None:
    """The ``--sweep.*`` options, then the ``--cv.*`` options every setting's cross-validation uses."""
    parser.add_argument("--sweep.param", type=str, required=True,
                        help="parameter(s) to sweep: model.alpha, or a list [model.alpha,model.beta]")
    parser.add_argument("--sweep.values", type=str, required=True,
                        help="values: 0.1,0.2 or [0.1,0.2]; several parameters: [[a1,b1],[a2,b2]] (zip) or "
                             "[[a1,a2],[b1,b2]] (grid)")
    parser.add_argument("--sweep.mode", type=str, default="zip", help="zip | grid (several parameters only)")
    add_cv_arguments(parser)


def _sweep(options, config_args: list[str]) -> None:
    params = [str(p) for p in parse_list(options.sweep.param)]
    cv_options = cv_kwargs(options)
    out = cv_options.pop("out")
    run_sweep(config_args, params, parse_list(options["sweep.values"]), out, options.sweep.mode, **cv_options)


sweep_main = ForwardingCommand(
    "ser-mtl sweep", ("--sweep.", "--cv."), _sweep,
    "One cross-validation per setting of one or more parameters.", add_options=add_sweep_arguments,
    errors=(CVError, ValueError))
