"""SLURM scripts: syntax (bash -n), array size, requeue signal, and what submit.sh and a task execute.

``sbatch``, ``srun`` and the compute-node Python are replaced by small shell stand-ins on PATH
that record their arguments, so the scripts' real control flow runs here without a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ser_mtl.command_line import split_argv
from ser_mtl.runs.cv import run_cv, task_grid
from ser_mtl.runs.cv_command import cv_main, parse_int_list
from ser_mtl.runs.slurm import SlurmOptions, array_spec, write_cv_scripts

CONFIG = ["--config", "configs/demo.yaml", "--model.alpha", "0.3", "--data.root", "/data/my corpus/IEMOCAP"]


def write(tmp_path: Path, folds=(0, 1, 2), repeats=2, **options) -> dict:
    opts = SlurmOptions(python="/opt/venv/bin/python", **options)
    return write_cv_scripts(CONFIG, list(folds), repeats, str(tmp_path / "cv"), 5, "AAE loso", opts)


def sbatch_lines(path: str) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line.startswith("#SBATCH")]


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def test_scripts_parse_and_request_the_array(tmp_path: Path) -> None:
    paths = write(tmp_path, partition="gpu", account="lab", gpus=1, cpus=6, mem="20G", time="02:00:00",
                  extra=["--qos=high", "#SBATCH --constraint=a100"], setup=["module load cuda/12"])
    assert paths["n_tasks"] == 6
    for key in ("array", "aggregate", "submit"):
        result = subprocess.run(["bash", "-n", paths[key]], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    lines = sbatch_lines(paths["array"])
    for expected in ("#SBATCH --array=0-5", "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue",
                     "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --gres=gpu:1",
                     "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=6", "#SBATCH --mem=20G",
                     "#SBATCH --time=02:00:00", "#SBATCH --qos=high", "#SBATCH --constraint=a100",
                     f"#SBATCH --chdir={Path.cwd()}"):
        assert expected in lines, expected
    text = Path(paths["array"]).read_text()
    body = text.splitlines()
    srun = [i for i, line in enumerate(body) if line.startswith("srun ")]
    assert len(srun) == 1 and body.index("module load cuda/12") < srun[0]
    assert max(i for i, line in enumerate(body) if line.startswith("#SBATCH")) < body.index("set -eo pipefail")
    assert '--cv.only_task "$SLURM_ARRAY_TASK_ID"' in body[srun[0]]
    assert (tmp_path / "cv" / "slurm" / "logs").is_dir()  # sbatch needs the --output folder to exist
    aggregate = Path(paths["aggregate"]).read_text()
    assert f"-m ser_mtl.analysis.summary {tmp_path / 'cv'}" in aggregate and "gres" not in aggregate
    assert os.access(paths["submit"], os.X_OK)


def test_array_spec_and_cpu_only_tasks(tmp_path: Path) -> None:
    assert array_spec(40) == "0-39" and array_spec(40, 8) == "0-39%8"
    with pytest.raises(ValueError):
        array_spec(0)
    paths = write(tmp_path, folds=range(10), repeats=10, gpus=0, max_parallel=4)
    lines = sbatch_lines(paths["array"])
    assert "#SBATCH --array=0-99%4" in lines and not any("gres" in line for line in lines)


def test_each_task_runs_its_own_fold_and_repeat(tmp_path: Path) -> None:
    """Execute the array script for every task id with stand-in srun/python; decode what they ran."""
    paths = write(tmp_path)
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "srun", 'exec "$@"\n')
    stand_in(bin_dir, "fake_python", 'printf "%s\\n" "$@" > "$RECORD"\n')
    grid = task_grid([0, 1, 2], 2)
    seen = []
    for task in range(6):
        record = tmp_path / f"task{task}.txt"
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": str(task),
               "SER_MTL_PYTHON": str(bin_dir / "fake_python"), "RECORD": str(record)}
        subprocess.run(["bash", paths["array"]], env=env, check=True, capture_output=True, cwd=tmp_path)
        argv = record.read_text().splitlines()
        assert argv[:2] == ["-m", "ser_mtl.runs.cv"]  # = `ser-mtl cv`
        mine, config_args = split_argv(argv[2:], ("--cv.",))
        assert config_args == CONFIG  # quoting survived the shell, spaces included
        cv = cv_main.parser().parse_args(mine).cv
        assert (cv.only_task, parse_int_list(cv.folds), cv.repeats, cv.base_seed, cv.label) == \
            (task, [0, 1, 2], 2, 5, "AAE loso")
        assert cv.out == str((tmp_path / "cv").absolute())
        seen.append(grid[cv.only_task])
    assert sorted(seen) == sorted((f, r) for f in range(3) for r in range(2))  # each run exactly once


def test_submit_chains_the_aggregation_on_the_array(tmp_path: Path) -> None:
    paths = write(tmp_path)
    bin_dir = tmp_path / "bin"
    log = tmp_path / "sbatch_calls.txt"
    stand_in(bin_dir, "sbatch", f'echo "$*" >> {log}\n'
             f'n=$(wc -l < {log}); echo "$((4240 + n));cluster1"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run([paths["submit"]], env=env, capture_output=True, text=True, check=True)
    calls = log.read_text().splitlines()
    assert calls == ["--parsable cv_array.sbatch", "--parsable --dependency=afterok:4241 aggregate.sbatch"]
    assert "array job 4241" in result.stdout
    log.unlink()
    subprocess.run([paths["submit"], "3,5"], env=env, capture_output=True, check=True)
    assert log.read_text().splitlines() == ["--parsable --array=3,5 cv_array.sbatch",
                                            "--parsable --dependency=afterok:4241 aggregate.sbatch"]


def test_run_cv_slurm_writes_scripts_and_runs_nothing(tmp_path: Path) -> None:
    class NoRuns:
        def num_folds(self, config_args):
            return 5

        def resolve_config(self, config_args):
            return {"data": {"scheme": "loso_session"}}

        def run_stage(self, stage, args, run_dir):
            raise AssertionError("slurm=True must not run anything")

    config = tmp_path / "c.yaml"
    config.write_text("data:\n  scheme: loso_session\n")
    out = tmp_path / "cv"
    paths = run_cv(["--config", str(config)], None, 3, str(out), slurm=True, backend=NoRuns(),
                   slurm_options=SlurmOptions(partition="p"))
    assert paths["n_tasks"] == 15 and "#SBATCH --array=0-14" in sbatch_lines(paths["array"])
    record = json.loads((out / "cv.json").read_text())
    assert record["grid"] == {"folds": [0, 1, 2, 3, 4], "repeats": [0, 1, 2]}
    assert record["resolved"] == {"data": {"scheme": "loso_session"}}
    assert sorted(p.name for p in out.iterdir()) == ["cv.json", "slurm"]


def test_aggregation_script_writes_the_summary(tmp_path: Path) -> None:
    paths = write(tmp_path, folds=(0, 1), repeats=1)
    for fold, ua in ((0, 0.4), (1, 0.6)):
        run = tmp_path / "cv" / f"fold{fold}_rep0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"fold": fold, "repeat": 0, "seed": 1, "wa": ua, "ua": ua}))
    env = {**os.environ, "SER_MTL_PYTHON": sys.executable}
    subprocess.run(["bash", paths["aggregate"]], env=env, check=True, capture_output=True)
    summary = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert summary["n_runs"] == 2 and summary["ua_mean"] == pytest.approx(0.5)


def test_sweep_with_slurm_submits_one_array_per_setting(tmp_path: Path) -> None:
    from ser_mtl.runs.sweep import run_sweep

    class TwoFolds:
        def num_folds(self, config_args):
            return 2

        def resolve_config(self, config_args):
            return None

        def run_stage(self, stage, args, run_dir):
            raise AssertionError("slurm=True must not run anything")

    out = tmp_path / "sweep"
    run_sweep(["--trainer.max_epochs", "3"], ["model.alpha"], [0.3, 0.6], str(out), folds=None, repeats=2,
              slurm=True, backend=TwoFolds(), slurm_options=SlurmOptions(python="/opt/venv/bin/python"))
    for alpha in (0.3, 0.6):
        array = out / f"model.alpha={alpha}" / "slurm" / "cv_array.sbatch"
        assert "#SBATCH --array=0-3" in sbatch_lines(str(array))
        assert f"--model.alpha {alpha} --cv.folds '[0,1]'" in array.read_text()
    submit_all = out / "submit_all.sh"
    assert subprocess.run(["bash", "-n", str(submit_all)], check=False).returncode == 0
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch_calls.txt"
    stand_in(bin_dir, "sbatch", f'echo "$PWD $*" >> {log}\nn=$(wc -l < {log}); echo "$((100 + n))"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run([str(submit_all)], env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    assert calls == [f"{out / 'model.alpha=0.3' / 'slurm'} --parsable cv_array.sbatch",
                     f"{out / 'model.alpha=0.3' / 'slurm'} --parsable --dependency=afterok:101 aggregate.sbatch",
                     f"{out / 'model.alpha=0.6' / 'slurm'} --parsable cv_array.sbatch",
                     f"{out / 'model.alpha=0.6' / 'slurm'} --parsable --dependency=afterok:103 aggregate.sbatch"]


PRETRAIN = ["--config", "configs/librispeech_pretrain.yaml", "--data.root", "/data/Libri Speech"]


def test_pretraining_array_runs_first_and_the_folds_wait_for_it(tmp_path: Path) -> None:
    """--cv.pretrain: one pretraining task per repeat; the fold array depends on the whole pretraining array."""
    from ser_mtl.runs.cv_command import cv_kwargs

    opts = SlurmOptions(python="/opt/venv/bin/python")
    paths = write_cv_scripts(CONFIG, [0, 1, 2], 2, str(tmp_path / "cv"), 5, None, opts, pretrain=PRETRAIN)
    assert "#SBATCH --array=0-1" in sbatch_lines(paths["pretrain_array"])
    assert "#SBATCH --job-name=ser-mtl-cv-pretrain" in sbatch_lines(paths["pretrain_array"])
    assert subprocess.run(["bash", "-n", paths["submit"]], check=False).returncode == 0
    bin_dir = tmp_path / "bin"
    stand_in(bin_dir, "srun", 'exec "$@"\n')
    stand_in(bin_dir, "fake_python", 'printf "%s\\n" "$@" > "$RECORD"\n')
    for script, option in (("pretrain_array", "only_pretrain"), ("array", "only_task")):
        record = tmp_path / f"{script}.txt"
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "1",
               "SER_MTL_PYTHON": str(bin_dir / "fake_python"), "RECORD": str(record)}
        subprocess.run(["bash", paths[script]], env=env, check=True, capture_output=True, cwd=tmp_path)
        mine, config_args = split_argv(record.read_text().splitlines()[2:], ("--cv.",))
        kwargs = cv_kwargs(cv_main.parser().parse_args(mine))
        assert config_args == CONFIG and kwargs["pretrain"] == PRETRAIN  # the same record in both arrays
        assert kwargs[option] == 1 and kwargs["only_task" if option == "only_pretrain" else "only_pretrain"] is None
    log = tmp_path / "sbatch_calls.txt"
    stand_in(bin_dir, "sbatch", f'echo "$*" >> {log}\nn=$(wc -l < {log}); echo "$((700 + n));c1"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run([paths["submit"]], env=env, capture_output=True, text=True, check=True)
    assert log.read_text().splitlines() == ["--parsable pretrain_array.sbatch",
                                            "--parsable --dependency=afterok:701 cv_array.sbatch",
                                            "--parsable --dependency=afterok:702 aggregate.sbatch"]
