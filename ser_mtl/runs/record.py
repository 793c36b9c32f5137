"""The cv folder's configuration record (``DIR/cv.json``) and the checks on the training arguments.

The runner writes the record before any run starts and refuses a folder whose record holds another
configuration (``ensure_record``), so one folder never mixes two configurations' runs; the record keeps
the resolved configuration (``resolve_config``) and the text of every ``--config`` file and of the files
those include (``config_files``). Arguments the runner sets itself are refused (``check_config_args``,
``check_pretrain_args``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
from pathlib import Path
from typing import Any

import yaml

from ser_mtl.analysis.summary import RECORD_NAME, read_record
from ser_mtl.io_utils import atomic_write_json
from ser_mtl.runs.errors import CVError

# Arguments the runner sets per run; a user value would be silently overridden, so it is refused.
RESERVED_ARGS = ("--data.fold", "--seed_everything", "--trainer.default_root_dir", "--ckpt_path")

# Set per pretraining by the runner (--data.fold is the pretraining config's own validation fold: allowed).
PRETRAIN_RESERVED = ("--seed_everything", "--trainer.default_root_dir", "--ckpt_path")

# The record's keys that must agree between the folder and the command (else: another configuration).
CONFIG_KEYS = ("config_args", "base_seed", "config_files", "pretrain", "pretrain_config_files")


def config_files(config_args: list[str]) -> dict[str, str]:
    """Text of every ``--config FILE`` in the arguments (the record keeps what was actually run)."""
    files: dict[str, str] = {}
    for i, arg in enumerate(config_args):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else (
            config_args[i + 1] if arg == "--config" and i + 1 < len(config_args) else None)
        if path is not None:
            if not Path(path).is_file():
                raise CVError(f"--config {path}: no such file")
            _add_config_file(Path(path), files)
    return files


def _add_config_file(path: Path, files: dict[str, str]) -> None:
    """``path``'s text and, recursively, that of the files it includes with a top-level ``config:`` line
    (``configs/networks/*.yaml``), so that editing a shared network file counts as a changed configuration."""
    text = path.read_text(encoding="utf-8")
    files[str(path)] = text
    try:
        included = (yaml.safe_load(text) or {}).get("config")
    except (yaml.YAMLError, AttributeError):
        return  # LightningCLI reports a malformed config itself
    for name in included if isinstance(included, list) else [included] if included else []:
        child = path.parent / name
        if child.is_file() and str(child) not in files:
            _add_config_file(child, files)


def check_config_args(config_args: list[str]) -> None:
    """Refuse the arguments the runner sets per run (``RESERVED_ARGS``) and ``--cv.*`` among them."""
    for arg in config_args:
        name = arg.split("=", 1)[0]
        if name in RESERVED_ARGS:
            raise CVError(f"{name} is set by the cv runner for each run; use --cv.folds / --cv.base_seed / "
                          f"--cv.out instead")
        if name.startswith("--cv."):
            raise CVError(f"{arg}: --cv.* options belong to the runner, not to the training arguments")


def ensure_record(out: Path, record: dict[str, Any], folds: list[int], repeats: int) -> None:
    """Write ``out/cv.json``, refusing a folder that holds another configuration; the grid is the union."""
    path = out / RECORD_NAME
    previous = read_record(out)
    if previous is not None:
        for key in CONFIG_KEYS:
            if previous.get(key) != record.get(key):
                raise CVError(f"{path}: this folder holds runs of a different {key} "
                              f"({previous.get(key)!r} != {record.get(key)!r}); use another --cv.out, or "
                              f"delete {path} if the change is deliberate")
    old_grid = (previous or {}).get("grid", {})
    grid = {"folds": sorted(set(old_grid.get("folds", [])) | set(folds)),
            "repeats": sorted(set(old_grid.get("repeats", [])) | set(range(repeats)))}
    merged = {**record, "resolved": record.get("resolved") or (previous or {}).get("resolved"), "grid": grid}
    if record.get("pretrain"):
        merged["pretrain_resolved"] = record.get("pretrain_resolved") or (previous or {}).get("pretrain_resolved")
    if merged != previous:
        atomic_write_json(path, merged)


def check_pretrain_args(pretrain: list[str], config_args: list[str]) -> None:
    """Refuse what the runner sets per pretraining, ``--cv.*`` among its arguments, and ``--model.init_from``
    in the training arguments (the pretraining provides it)."""
    for arg in pretrain:
        name = arg.split("=", 1)[0]
        if name in PRETRAIN_RESERVED:
            raise CVError(f"--cv.pretrain: {name} is set by the cv runner for each pretraining")
        if name.startswith("--cv."):
            raise CVError(f"--cv.pretrain: {arg} is a runner option, not a pretraining argument")
    if any(a.split("=", 1)[0] == "--model.init_from" for a in config_args):
        raise CVError("--model.init_from and --cv.pretrain both say where the fine-tuning starts; give one: "
                      "--cv.pretrain to pretrain per repeat, or --model.init_from for one fixed checkpoint")


def resolve_config(config_args: list[str], cli_module: str = "ser_mtl.cli") -> dict[str, Any] | None:
    """``ser-mtl fit <args> --print_config``, parsed (nothing is instantiated): the record's ``resolved``."""
    buffer, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(errors):
        try:
            importlib.import_module(cli_module).main(["fit", *config_args, "--print_config"])
        except SystemExit as exit_:
            if exit_.code not in (0, None):  # the CLI's own one line (an unknown option, a bad value)
                said = [line for line in errors.getvalue().splitlines() if line.strip()]
                reason = said[-1].split(": ", 1)[-1] if said else f"exit status {exit_.code}"
                raise ValueError(f"the configuration does not parse: {reason}") from exit_
    return yaml.safe_load(buffer.getvalue())
