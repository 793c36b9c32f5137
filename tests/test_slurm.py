"""Cluster runs through submitit (``ser_mtl.runs.cluster``), without a cluster.

``sbatch``, ``srun``, ``squeue``, ``sacct`` and ``scontrol`` are small shell stand-ins on PATH: ``sbatch``
logs each submitted script and answers ``Submitted batch job N`` (N = 101, 102, ...), so the tests read
the scripts and the task pickles submitit really wrote. The tasks themselves run through submitit's
debug and local executors with a stand-in CLI *module* that follows the fit/test contract.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pickle
import re
import sys
import textwrap
from pathlib import Path

import pytest
import submitit
from submitit.core.utils import DelayedSubmission

import ser_mtl.runs.cv as cv_module
from ser_mtl.runs.cluster import ClusterOptions, RunTask
from ser_mtl.runs.cv import plan_cv, run_cv
from ser_mtl.runs.cv_command import cv_main
from ser_mtl.runs.errors import CVError
from ser_mtl.runs.stages import CLIBackend
from ser_mtl.runs.sweep import run_sweep

SLURM_VARIABLES = ("SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_PROCID", "SLURM_ARRAY_JOB_ID")
PLUGIN = {"class_path": "pytorch_lightning.plugins.environments.SLURMEnvironment",
          "init_args": {"auto_requeue": False}}

STAND_IN_CLI = '''
import json
import os
from pathlib import Path


def num_folds(config_args):
    return 4


def main(argv):
    if "--print_config" in argv:
        print("model:\\n  alpha: 0.4")
        return
    stage, args = argv[0], argv[1:]
    get = lambda name: ([args[i + 1] for i, a in enumerate(args[:-1]) if a == name] or [None])[-1]
    root = Path(get("--trainer.default_root_dir"))
    with open(root / "stages.jsonl", "a") as log:
        log.write(json.dumps([stage, args, os.getpid()]) + "\\n")
    if stage == "fit" and os.environ.get("STAND_IN_MISTAKE"):  # what ser_mtl.cli does for a user's mistake
        raise SystemExit(1) from ValueError(os.environ["STAND_IN_MISTAKE"])
    if stage == "fit":
        (root / "checkpoints").mkdir(parents=True, exist_ok=True)
        (root / "checkpoints" / "last.ckpt").write_text("epoch 1")
        if os.environ.get("STAND_IN_REQUEUED") == root.name and get("--ckpt_path") is None:
            raise SystemExit(-1)  # what submitit's handler does mid-fit once it has requeued the task
        if os.environ.get("STAND_IN_PREEMPT") == root.name and get("--ckpt_path") is None:
            raise RuntimeError("preempted in epoch 2")
        if os.environ.get("STAND_IN_OUT_OF_REQUEUES") == root.name:  # what submitit's handler raises then
            from submitit.core.utils import UncompletedJobError
            raise UncompletedJobError("Job not requeued because: timed-out too many times.")
        if os.environ.get("STAND_IN_SLOW") == root.name:  # a long epoch: real SLURM's signals arrive during it
            import time
            for _ in range(240):
                time.sleep(0.5)
        (root / "checkpoints" / "best.ckpt").write_text("best")
    else:
        wa = 0.5 + int(get("--data.fold")) / 10 + int(get("--seed_everything")) % 100 / 10000
        (root / "test_metrics.json").write_text(json.dumps({"wa": wa, "ua": wa - 0.05, "n_utterances": 10}))
'''

SBATCH = '''#!/bin/bash
dir=$(dirname "$0")
n=$(( $(cat "$dir/last_id" 2>/dev/null || echo 100) + 1 ))
echo "$n" > "$dir/last_id"
{ echo "### job $n: sbatch $*"; cat "${@: -1}"; } >> "$dir/sbatch.log"
echo "Submitted batch job $n"
'''


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch) -> CLIBackend:
    """The stand-in CLI, importable here and in submitit's task processes; no SLURM variables."""
    (tmp_path / "stand_in_cli.py").write_text(textwrap.dedent(STAND_IN_CLI))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "stand_in_cli", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    for name in SLURM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return CLIBackend(in_process=True, cli_module="stand_in_cli")


@pytest.fixture
def slurm_bin(tmp_path: Path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # sinfo: one GPU partition (the default) and one CPU partition, as `sinfo -h -o "%P|%c|%m|%G"` prints them
    sinfo = '#!/bin/bash\necho "gpu*|16|64000|gpu:4"\necho "gpu*|16|64000|gpu:4"\necho "cpu|2|8000|(null)"\n'
    for name, body in (("sbatch", SBATCH), ("srun", '#!/bin/bash\nexec "$@"\n'), ("squeue", "#!/bin/bash\n"),
                       ("sacct", "#!/bin/bash\n"), ("scontrol", "#!/bin/bash\n"), ("sinfo", sinfo)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return bin_dir


@pytest.fixture
def config(tmp_path: Path) -> list[str]:
    (tmp_path / "c.yaml").write_text("model:\n  alpha: 0.4\n")
    return ["--config", str(tmp_path / "c.yaml"), "--trainer.max_epochs", "2"]


def scripts(bin_dir: Path) -> dict[str, list[str]]:
    """Each submitted sbatch script's lines, by job id."""
    log = (bin_dir / "sbatch.log").read_text()
    parts = re.split(r"^### job (\d+): .*\n", log, flags=re.MULTILINE)[1:]
    return {parts[i]: parts[i + 1].splitlines() for i in range(0, len(parts), 2)}


def task_args(folder: Path, job_id: str) -> list:
    """The first argument of each task of job ``job_id`` (an array: in task order), from submitit's pickles."""
    paths = folder.glob(f"{job_id}*/{job_id}*_submitted.pkl")  # {id}/ (one job) or {id}_{task}/ (an array)
    return [DelayedSubmission.load(p).args[0] for p in sorted(paths, key=lambda p: int(p.parent.name[4:] or 0))]


def run_names(folder: Path, job_id: str) -> list[str]:
    return [f"{run.dir.parent.name}/{run.dir.name}" for run in task_args(folder, job_id)]


def stage_calls(run_dir: Path) -> list[tuple[str, list[str], int]]:
    """(stage, arguments, process id) of each stage the stand-in CLI ran in ``run_dir``."""
    return [tuple(json.loads(line)) for line in (run_dir / "stages.jsonl").read_text().splitlines()]


def stage_args(run_dir: Path, stage: str) -> list[list[str]]:
    return [args for name, args, _ in stage_calls(run_dir) if name == stage]


def arg(args: list[str], name: str) -> str | None:
    return ([args[i + 1] for i, a in enumerate(args[:-1]) if a == name] or [None])[-1]


def test_the_run_array_and_the_summary_job_ask_for_the_options_resources(tmp_path, config, stand_in,
                                                                          slurm_bin) -> None:
    options = ClusterOptions(partition="gpu", account="lab", gpus=1, cpus=6, mem="20G", time="02:00:00",
                             max_parallel=4, setup=["module load cuda/12"],
                             extra={"qos": "high", "gres": "gpu:a100:1", "exclusive": True})
    out = tmp_path / "cv"
    ids = run_cv(config, [0, 1, 2], 2, str(out), slurm=True, cluster_options=options, backend=stand_in)
    assert ids == {"runs": [f"101_{i}" for i in range(6)], "summary": "102"}
    array, summary = scripts(slurm_bin)["101"], scripts(slurm_bin)["102"]
    for option in ("array=0-5%4", "partition=gpu", "account=lab", "gpus-per-node=1", "ntasks-per-node=1",
                   "cpus-per-task=6", "mem=20G", "time=120", "qos=high", "signal=USR2@90", "job-name=ser-mtl"):
        assert f"#SBATCH --{option}" in array, option
    assert not any("dependency" in line for line in array)
    srun = next(i for i, line in enumerate(array) if line.startswith("srun "))
    assert array.index("module load cuda/12") < srun and "-m submitit.core._submit" in array[srun]
    assert run_names(out / "slurm", "101") == [f"cv/fold{f}_rep{r}" for r in range(2) for f in range(3)]
    assert "#SBATCH --dependency=afterany:101" in summary and "#SBATCH --cpus-per-task=1" in summary
    assert not any("gpus" in line or "--array" in line for line in summary)
    assert {"#SBATCH --account=lab", "#SBATCH --qos=high", "#SBATCH --job-name=ser-mtl-summary"} <= set(summary)
    # the runs' resources in --cv.slurm_extra stay with the runs: the summary job asks for one CPU only
    assert {"#SBATCH --gres=gpu:a100:1", "#SBATCH --exclusive"} <= set(array)
    assert not any(line.startswith(("#SBATCH --gres", "#SBATCH --exclusive")) for line in summary)
    assert task_args(out / "slurm", "102") == [[str(out)]]
    assert not list(out.glob("fold*"))  # nothing ran here


def test_pretrainings_come_first_and_the_runs_wait_for_them(tmp_path, config, stand_in, slurm_bin) -> None:
    out = tmp_path / "cv"
    ids = run_cv(config, [0, 1], 2, str(out), pretrain=["--config", config[1]], slurm=True,
                 cluster_options=ClusterOptions(max_parallel=4), backend=stand_in)
    assert ids == {"pretrain": ["101_0", "101_1"], "runs": [f"102_{i}" for i in range(4)], "summary": "103"}
    submitted = scripts(slurm_bin)
    assert "#SBATCH --array=0-1%2" in submitted["101"] and not any("dependency" in x for x in submitted["101"])
    # afterany: a failed pretraining fails its own repeat's runs (naming it), never leaves them pending forever
    assert {"#SBATCH --array=0-3%4", "#SBATCH --dependency=afterany:101"} <= set(submitted["102"])
    assert "#SBATCH --dependency=afterany:102" in submitted["103"]
    assert run_names(out / "slurm", "101") == ["cv/pretrain_rep0", "cv/pretrain_rep1"]


def test_resubmission_skips_finished_runs(tmp_path, config, stand_in, slurm_bin, capsys) -> None:
    out = tmp_path / "cv"
    run_cv(config, [0], 1, str(out), in_process=True, backend=stand_in)  # fold 0 of repeat 0, here
    assert (out / "fold0_rep0" / "metrics.json").is_file()
    ids = run_cv(config, [0, 1, 2], 2, str(out), slurm=True, backend=stand_in)
    assert ids["runs"] == [f"101_{i}" for i in range(5)] and "#SBATCH --array=0-4%5" in scripts(slurm_bin)["101"]
    assert run_names(out / "slurm", "101") == ["cv/fold1_rep0", "cv/fold2_rep0", "cv/fold0_rep1", "cv/fold1_rep1",
                                               "cv/fold2_rep1"]
    assert "submitted 5 run(s) (1 already finished)" in capsys.readouterr().out


def test_several_gpus_per_task_without_trainer_devices_is_warned_about(tmp_path, config, stand_in, slurm_bin,
                                                                        capsys) -> None:
    run_cv(config, [0, 1], 1, str(tmp_path / "a"), slurm=True, cluster_options=ClusterOptions(gpus=2),
           backend=stand_in)
    assert "warning: --cv.slurm_gpus 2 starts 2 ranks per task" in capsys.readouterr().out
    assert {"#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2"} <= set(scripts(slurm_bin)["101"])
    run_cv([*config, "--trainer.devices", "2"], [0, 1], 1, str(tmp_path / "b"), slurm=True,
           cluster_options=ClusterOptions(gpus=2), backend=stand_in)
    assert "warning" not in capsys.readouterr().out


@pytest.mark.parametrize(("time", "minutes"), [("02:00:00", 120), ("90", 90), ("30:00", 30), ("0:30:01", 31),
                                               ("1-12", 2160), ("1-00:30", 1470), ("2-0:0:0", 2880)])
def test_time_limits_in_sbatch_forms(time: str, minutes: int) -> None:
    assert ClusterOptions(time=time).minutes() == minutes


def test_a_malformed_time_limit_is_refused() -> None:
    with pytest.raises(CVError, match="--cv.slurm_time '2h'"):
        ClusterOptions(time="2h").minutes()


@pytest.mark.parametrize(("options", "message"), [
    ({"time": "1"}, "--cv.slurm_time '1': submitit signals a task 90 s before its time limit"),
    ({"time": "0:04:00"}, "give at least 5 minutes"),
    ({"gpus": -1}, "--cv.slurm_gpus -1: expected an integer >= 0"),
    ({"max_parallel": -1}, "--cv.slurm_max_parallel -1: expected an integer >= 1"),
    ({"cpus": 0}, "--cv.slurm_cpus 0: expected an integer >= 1"),
])
def test_options_a_cluster_cannot_honour_are_refused(options, message) -> None:
    with pytest.raises(CVError, match=re.escape(message)):
        ClusterOptions(**options).check()
    assert ClusterOptions(time="5").check().minutes() == 5 and ClusterOptions(gpus=0).check().gpus == 0


def test_a_bad_cluster_option_is_one_line_before_anything_is_written(tmp_path, config, stand_in, slurm_bin,
                                                                      capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cv_main([*config, "--cv.out", str(tmp_path / "cv"), "--cv.slurm", "--cv.slurm_max_parallel", "-1"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "ser-mtl cv: --cv.slurm_max_parallel -1: expected an integer >= 1\n"
    assert not (tmp_path / "cv").exists() and not (slurm_bin / "sbatch.log").exists()


@pytest.mark.parametrize("kind", ["debug", "local"])
def test_tasks_under_a_local_executor_give_the_local_runners_results(tmp_path, config, stand_in, kind) -> None:
    """Debug: every task in this process; local: each task in its own process (slower: a few seconds)."""
    folds, repeats = ([0, 1, 2], 2) if kind == "debug" else ([0, 1], 1)
    executor = (submitit.DebugExecutor if kind == "debug" else submitit.LocalExecutor)(tmp_path / "jobs" / "%j")
    ids = run_cv(config, folds, repeats, str(tmp_path / "cluster"), base_seed=3, executor=executor,
                 cluster_options=ClusterOptions(cli_module="stand_in_cli"), backend=stand_in)
    assert len(ids["runs"]) == len(folds) * repeats
    local = run_cv(config, folds, repeats, str(tmp_path / "local"), base_seed=3, in_process=True, backend=stand_in)
    for name in (f"fold{f}_rep{r}" for f in folds for r in range(repeats)):
        expected = json.loads((tmp_path / "local" / name / "metrics.json").read_text())
        got = json.loads((tmp_path / "cluster" / name / "metrics.json").read_text())
        assert got.pop("cost").keys() == expected.pop("cost").keys()  # wall seconds differ between runs
        assert got == expected
        pids = {pid for _, _, pid in stage_calls(tmp_path / "cluster" / name)}
        assert (pids == {os.getpid()}) == (kind == "debug")  # local: fit and test in the task's process
    summary = json.loads((tmp_path / "cluster" / "summary.json").read_text())  # written by the summary job
    assert (summary["wa_mean"], summary["ua_mean"]) == (pytest.approx(local["wa_mean"]), pytest.approx(local["ua_mean"]))


REFUSING_SBATCH = '''#!/bin/bash
dir=$(dirname "$0")
n=$(( $(cat "$dir/last_id" 2>/dev/null || echo 100) + 1 ))
if [ "$n" -ge "$(cat "$dir/refuse_from")" ]; then
  echo "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified" >&2
  exit 1
fi
echo "$n" > "$dir/last_id"
echo "Submitted batch job $n"
'''


def test_an_sbatch_refusal_is_one_line_and_leaves_nothing_queued(tmp_path, config, stand_in, slurm_bin,
                                                                 monkeypatch, capsys) -> None:
    (slurm_bin / "sbatch").write_text(REFUSING_SBATCH)
    (slurm_bin / "refuse_from").write_text("102")  # the pretraining array (101) is accepted, the runs' refused
    (slurm_bin / "scancel").write_text('#!/bin/bash\necho "$@" >> "$(dirname "$0")/scancel.log"\n')
    (slurm_bin / "scancel").chmod(0o755)
    monkeypatch.setattr(cv_module, "CLIBackend", functools.partial(CLIBackend, cli_module="stand_in_cli"))
    out = tmp_path / "cv"
    with pytest.raises(SystemExit) as exit_:
        cv_main([*config, "--cv.out", str(out), "--cv.folds", "0,1", "--cv.slurm", "--cv.slurm_account", "nolab",
                 "--cv.pretrain", f"--config {config[1]}"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err == ("ser-mtl cv: sbatch refused the submission: sbatch: error: Batch job submission failed: Invalid "
                   "account or account/partition combination specified; cancelled the job(s) already accepted "
                   "(101), so nothing is left queued; fix the --cv.slurm_* options and submit again\n")
    assert (slurm_bin / "scancel.log").read_text() == "101\n"
    assert not list((out / "slurm").glob("*.pkl")) and not list((out / "slurm").glob(".submission_file_*"))


@pytest.mark.parametrize(("options", "message"), [
    ({"partition": "cpu"}, "--cv.slurm_gpus 1: partition cpu has no GPUs (sinfo GRES: (null)); pass --cv.slurm_gpus 0"),
    ({"partition": "cpu", "gpus": 0, "cpus": 8}, "--cv.slurm_cpus 8: the nodes of partition cpu have at most 2 CPUs"),
    ({"partition": "big"}, "--cv.slurm_partition big: sinfo lists no such partition"),
    ({"cpus": 32}, "--cv.slurm_cpus 32: the nodes of the default partition have at most 16 CPUs"),
])
def test_resources_the_partition_lacks_are_refused_before_submitting(tmp_path, config, stand_in, slurm_bin,
                                                                      options, message) -> None:
    with pytest.raises(CVError, match=re.escape(message)):
        run_cv(config, [0], 1, str(tmp_path / "cv"), slurm=True, cluster_options=ClusterOptions(**options),
               backend=stand_in)
    assert not (slurm_bin / "sbatch.log").exists()  # nothing submitted
    run_cv(config, [0], 1, str(tmp_path / "cpu"), slurm=True, backend=stand_in,
           cluster_options=ClusterOptions(partition="cpu", gpus=0, cpus=2))  # what the partition has: submitted
    assert "#SBATCH --partition=cpu" in scripts(slurm_bin)["101"]


def test_runs_still_queued_are_not_submitted_again(tmp_path, config, stand_in, slurm_bin, capsys) -> None:
    out = tmp_path / "cv"
    run_cv(config, [0, 1, 2], 1, str(out), slurm=True, cluster_options=ClusterOptions(), backend=stand_in)
    assert json.loads((out / "slurm" / "queued.json").read_text()) == {
        str(out.absolute() / f"fold{f}_rep0"): f"101_{f}" for f in range(3)}
    # squeue -r: fold 0's and fold 2's tasks still wait; fold 1's task has ended (without finishing its run)
    (slurm_bin / "squeue").write_text('#!/bin/bash\necho "101_0"\necho "101_2"\necho "77"\n')
    capsys.readouterr()
    ids = run_cv(config, [0, 1, 2], 1, str(out), slurm=True, cluster_options=ClusterOptions(), backend=stand_in)
    assert ids["runs"] == ["103"] and run_names(out / "slurm", "103") == ["cv/fold1_rep0"]  # one task: no array
    assert "2 run(s) still queued or running from an earlier submission (job 101): not submitted again" in \
        capsys.readouterr().out
    (slurm_bin / "squeue").write_text('#!/bin/bash\necho "101_0"\necho "101_2"\necho "103"\n')
    assert run_cv(config, [0, 1, 2], 1, str(out), slurm=True, cluster_options=ClusterOptions(), backend=stand_in) == {}
    assert "every unfinished run is already queued or running; nothing submitted" in capsys.readouterr().out
    assert list(scripts(slurm_bin)) == ["101", "102", "103", "104"]  # no third array, no third summary job


def test_arrays_beyond_the_clusters_max_array_size_are_split(tmp_path, config, stand_in, slurm_bin) -> None:
    (slurm_bin / "scontrol").write_text('#!/bin/bash\necho "MaxArraySize            = 3"\necho "MaxJobCount = 10000"\n')
    out = tmp_path / "cv"
    ids = run_cv(config, [0, 1, 2, 3], 2, str(out), slurm=True, cluster_options=ClusterOptions(max_parallel=8),
                 backend=stand_in)
    assert ids["runs"] == ["101_0", "101_1", "101_2", "102_0", "102_1", "102_2", "103_0", "103_1"]
    submitted = scripts(slurm_bin)
    assert [next(x for x in submitted[j] if "--array" in x) for j in ("101", "102", "103")] == \
        ["#SBATCH --array=0-2%3", "#SBATCH --array=0-2%3", "#SBATCH --array=0-1%2"]
    assert "#SBATCH --dependency=afterany:101:102:103" in submitted["104"]  # the summary waits for all three
    names = run_names(out / "slurm", "101") + run_names(out / "slurm", "102") + run_names(out / "slurm", "103")
    assert names == [f"cv/fold{f}_rep{r}" for r in range(2) for f in range(4)]  # every run once, in order


def test_a_failed_pretraining_fails_only_its_repeat_and_the_summary_still_runs(tmp_path, config, stand_in,
                                                                                monkeypatch) -> None:
    monkeypatch.setenv("STAND_IN_PREEMPT", "pretrain_rep1")  # repeat 1's pretraining dies in epoch 2
    out = tmp_path / "cv"
    run_cv(config, [0, 1], 2, str(out), pretrain=["--config", config[1]], backend=stand_in,
           executor=submitit.DebugExecutor(tmp_path / "jobs" / "%j"),
           cluster_options=ClusterOptions(cli_module="stand_in_cli"))
    assert all((out / f"fold{f}_rep0" / "metrics.json").is_file() for f in (0, 1))  # repeat 0 ran
    assert not any((out / f"fold{f}_rep1" / "metrics.json").exists() for f in (0, 1))
    assert not (out / "fold0_rep1" / "stages.jsonl").exists()  # refused before any stage: its pretraining failed
    summary = json.loads((out / "summary.json").read_text())  # the summary job ran after all
    assert summary["complete_repeats"] == [0] and {"fold": 0, "repeat": 1} in summary["missing"]


def test_checkpoint_requeues_the_same_run_which_resumes_from_last_ckpt(tmp_path, config, stand_in,
                                                                       monkeypatch) -> None:
    run = plan_cv(config, [1], 1, tmp_path / "cv", backend=stand_in).runs[0]
    task = RunTask("stand_in_cli")
    monkeypatch.setenv("STAND_IN_PREEMPT", run.dir.name)
    with pytest.raises(RuntimeError, match="preempted"):
        task(run)
    assert (run.dir / "checkpoints" / "last.ckpt").is_file() and not (run.dir / "fit_done.json").exists()
    delayed = task.checkpoint(run)  # what submitit calls on SIGUSR2 (time limit, preemption)
    assert isinstance(delayed, DelayedSubmission) and delayed.function is task
    assert (delayed.args, delayed.kwargs) == ((run,), {})
    metrics = pickle.loads(pickle.dumps(delayed)).result()  # the requeued task
    fits = stage_args(run.dir, "fit")
    assert [arg(a, "--ckpt_path") for a in fits] == [None, str(run.dir / "checkpoints" / "last.ckpt")]
    assert metrics == json.loads((run.dir / "metrics.json").read_text()) and metrics["fold"] == 1


def test_under_slurm_lightning_does_not_requeue(tmp_path, config, stand_in, monkeypatch) -> None:
    from pytorch_lightning.plugins.environments import SLURMEnvironment

    plan = plan_cv(config, [0, 1], 1, tmp_path / "cv", backend=stand_in)
    RunTask("stand_in_cli")(plan.runs[0])
    assert not any("--trainer.plugins" in args for args in stage_args(plan.runs[0].dir, "fit"))
    for name, value in zip(SLURM_VARIABLES, ("1", "42", "ser-mtl", "0", "42")):
        monkeypatch.setenv(name, value)
    assert SLURMEnvironment.detect()
    RunTask("stand_in_cli")(plan.runs[1])
    for stage in ("fit", "test"):
        (args,) = stage_args(plan.runs[1].dir, stage)
        assert args[-2] == "--trainer.plugins" and json.loads(args[-1]) == PLUGIN
    module, name = PLUGIN["class_path"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), name)(**PLUGIN["init_args"]).auto_requeue is False


def test_the_cv_command_submits_and_refuses_conflicts_in_one_line(tmp_path, config, stand_in, slurm_bin,
                                                                  monkeypatch, capsys) -> None:
    monkeypatch.setattr(cv_module, "CLIBackend", functools.partial(CLIBackend, cli_module="stand_in_cli"))
    out = str(tmp_path / "cv")
    cv_main([*config, "--cv.out", out, "--cv.folds", "0,1", "--cv.slurm", "true", "--cv.slurm_partition", "gpu",
             "--cv.slurm_time", "90", "--cv.slurm_extra", '["--qos=high"]'])
    assert {"#SBATCH --array=0-1%2", "#SBATCH --partition=gpu", "#SBATCH --time=90",
            "#SBATCH --qos=high"} <= set(scripts(slurm_bin)["101"])
    assert "submitted 2 run(s)" in capsys.readouterr().out
    for extra, message in ((["--cv.jobs", "2"], "--cv.jobs / --cv.devices apply to runs on this machine"),
                           ([], 'Could not detect "srun"')):
        if not extra:
            monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
        with pytest.raises(SystemExit) as exit_:
            cv_main([*config, "--cv.out", out, "--cv.folds", "0,1", "--cv.slurm", "true", *extra])
        err = capsys.readouterr().err
        assert exit_.value.code == 1 and err.startswith("ser-mtl cv: ") and message in err
        assert len(err.strip().splitlines()) == 1, err


def test_a_sweep_is_one_array_over_every_setting(tmp_path, config, stand_in, slurm_bin) -> None:
    out = tmp_path / "sweep"
    record = run_sweep(config, ["model.dropout"], [0.1, 0.3], str(out), folds=[0, 1], repeats=1, backend=stand_in,
                       slurm=True, cluster_options=ClusterOptions(max_parallel=8))
    assert record["submitted"] == {"runs": [f"101_{i}" for i in range(4)], "summary": "102"}
    assert list(scripts(slurm_bin)) == ["101", "102"] and "#SBATCH --array=0-3%4" in scripts(slurm_bin)["101"]
    settings = ["model.dropout=0.1", "model.dropout=0.3"]
    assert run_names(out / "slurm", "101") == [f"{s}/fold{f}_rep0" for s in settings for f in (0, 1)]
    assert "#SBATCH --dependency=afterany:101" in scripts(slurm_bin)["102"]
    assert task_args(out / "slurm", "102") == [[str(out.absolute() / s) for s in settings]]


def test_the_summary_job_names_the_unfinished_runs_and_how_to_resume(tmp_path, capsys) -> None:
    from ser_mtl.runs.cluster import summarise

    out = tmp_path / "cv"
    (out / "fold0_rep0").mkdir(parents=True)
    (out / "cv.json").write_text(json.dumps({"grid": {"folds": [0, 1], "repeats": [0, 1]}}))
    summarise([str(out)])  # no run finished: no summary.json, but a line that says what to do
    printed = capsys.readouterr().out
    assert (f"[cv] {out}: 4 of 4 runs unfinished: 4 cancelled or never started (fold0_rep0, fold1_rep0, "
            "fold0_rep1, fold1_rep1)") in printed
    assert "Submit the same command again to resume them" in printed
    (out / "fold0_rep0" / "metrics.json").write_text(json.dumps({"fold": 0, "repeat": 0, "seed": 1, "ua": 0.5,
                                                                  "wa": 0.5}))
    summarise([str(out)])
    printed = capsys.readouterr().out
    assert "3 of 4 runs unfinished: 3 cancelled or never started (fold1_rep0, fold0_rep1, fold1_rep1)" in printed
    assert (out / "summary.json").is_file()


def test_a_run_out_of_requeues_is_named_as_such_in_the_summary(tmp_path, config, stand_in, monkeypatch,
                                                               capsys) -> None:
    """The task's end is recorded in the run folder (unfinished.json): out of requeues says which options to
    change; another failure gives its message; a run without the record was cancelled or never started."""
    from submitit.core.utils import UncompletedJobError

    from ser_mtl.runs.cluster import summarise

    runs = plan_cv(config, [0, 1, 2], 1, tmp_path / "cv", backend=stand_in).runs
    monkeypatch.setenv("SLURM_RESTART_COUNT", "3")  # the fourth attempt
    monkeypatch.setenv("STAND_IN_OUT_OF_REQUEUES", "fold0_rep0")
    with pytest.raises(UncompletedJobError):
        RunTask("stand_in_cli", "00:30:00", 3)(runs[0])
    monkeypatch.setenv("STAND_IN_PREEMPT", "fold1_rep0")
    with pytest.raises(RuntimeError, match="preempted in epoch 2"):
        RunTask("stand_in_cli", "00:30:00", 3)(runs[1])
    record = json.loads((runs[0].dir / "unfinished.json").read_text())
    assert (record["reason"], record["attempt"], record["time"], record["max_requeues"]) == (
        "out of requeues", 4, "00:30:00", 3)
    assert "out of requeues after 4 attempt(s) of --cv.slurm_time 00:30:00" in capsys.readouterr().out
    summarise([str(runs[0].dir.parent)])
    printed = capsys.readouterr().out
    assert ("3 of 3 runs unfinished: 1 out of requeues (fold0_rep0): each attempt reached the time limit "
            "(--cv.slurm_time 00:30:00) and 4 attempts were allowed (--cv.slurm_max_requeues 3); submit again with "
            "a longer --cv.slurm_time or more --cv.slurm_max_requeues; 1 failed (fold1_rep0; fold1_rep0: preempted "
            "in epoch 2); 1 cancelled or never started (fold2_rep0)") in printed
    monkeypatch.delenv("STAND_IN_OUT_OF_REQUEUES")
    RunTask("stand_in_cli", "01:00:00", 3)(runs[0])  # submitted again with more time: resumes and finishes
    assert not (runs[0].dir / "unfinished.json").exists() and (runs[0].dir / "metrics.json").is_file()


def test_the_first_task_to_meet_a_mistake_cancels_its_array_and_the_summary_says_it(tmp_path, config, stand_in,
                                                                                   slurm_bin, monkeypatch,
                                                                                   capsys) -> None:
    from ser_mtl.runs.cluster import summarise
    from ser_mtl.runs.errors import RunMistake

    (slurm_bin / "scancel").write_text('#!/bin/bash\necho "$@" >> "$(dirname "$0")/scancel.log"\n')
    (slurm_bin / "scancel").chmod(0o755)
    plan = plan_cv(config, [0, 1], 1, tmp_path / "cv", backend=stand_in)
    monkeypatch.setenv("STAND_IN_MISTAKE", "monitor 'val/x' is never logged in validation of this model")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "555")
    with pytest.raises(RunMistake, match=r"monitor 'val/x' is never logged .*\(fit; every run would fail the same"):
        RunTask("stand_in_cli")(plan.runs[0])
    assert (slurm_bin / "scancel.log").read_text() == "555\n"  # the other tasks of the array never start
    summarise([str(plan.out)])
    printed = capsys.readouterr().out
    assert (f"[cv] {plan.out}: stopped by a configuration mistake: fold 0 repeat 0: monitor 'val/x' is never "
            "logged") in printed
    assert ("2 of 2 runs unfinished: 1 failed (fold0_rep0; fold0_rep0: monitor 'val/x' is never logged in validation "
            "of this model (fit; every run would fail the same way)); 1 cancelled or never started (fold1_rep0)") in printed


WANDB_STAND_IN = '''
import wandb
from pathlib import Path


def main(argv):
    # what Lightning's WandbLogger does: log into wandb.run when one is open, else start one
    run = wandb.run if wandb.run is not None else wandb.init(mode="offline", dir=argv[1], project="stand-in")
    with open(Path(argv[1]) / "runs.txt", "a") as f:
        f.write(run.id + "\\n")
'''


def test_each_in_process_stage_gets_its_own_wandb_run(tmp_path, monkeypatch) -> None:
    from ser_mtl.runs.stages import run_cli_stage

    (tmp_path / "wandb_stand_in.py").write_text(textwrap.dedent(WANDB_STAND_IN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for stage in ("fit", "test"):  # a cluster task runs both in its one process
        run_cli_stage("wandb_stand_in", [stage, str(tmp_path)])
    fit_id, test_id = (tmp_path / "runs.txt").read_text().split()
    assert fit_id != test_id  # the test's metrics never land in the fit's run


def test_a_requeued_task_ends_as_submitit_asks_not_as_a_failure(tmp_path, config, stand_in, monkeypatch,
                                                               capsys) -> None:
    run = plan_cv(config, [0], 1, tmp_path / "cv", backend=stand_in).runs[0]
    monkeypatch.setenv("STAND_IN_REQUEUED", run.dir.name)
    with pytest.raises(SystemExit) as exit_:  # not RunFailed: submitit's process_job logs no exception for it
        RunTask("stand_in_cli")(run)
    assert exit_.value.code == -1 and not isinstance(exit_.value, Exception)
    assert "fit interrupted: the task is requeued and its next attempt resumes from the run's last.ckpt" in \
        capsys.readouterr().out
    monkeypatch.delenv("STAND_IN_REQUEUED")
    RunTask("stand_in_cli")(run)  # the next attempt
    assert "fit, resuming from last.ckpt" in capsys.readouterr().out and (run.dir / "metrics.json").is_file()
