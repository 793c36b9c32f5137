"""Every command of the README's "Reproducing the paper" block, as a user's shell runs it.

`recorded_commands` runs the block with bash and records each ``ser-mtl`` call instead of running it. The
first tests resolve every recorded call's training configuration (``fit --print_config``: nothing is
built, so the README's placeholder paths are fine) and check the settings the paper's protocol fixes:
the evaluation scheme of each table and figure, auxiliary speech on or off, alpha and beta, which
pretraining each model starts from and whether its layers fit. The slow test then runs the first call of
every README line for real, in miniature (`miniature` says exactly what it changes), on generated corpora.
"""

from __future__ import annotations

import contextlib
import io
from functools import cache
from pathlib import Path

import pytest
import yaml
from readme_runbook import Command, recorded_commands

from ser_mtl.cli import main
from ser_mtl.command_line import split_argv
from ser_mtl.models.paper_weights import paper_weights

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = ("encoder_channels", "encoder_pools", "head_conv_channels", "head_hidden", "head_pool",
                "use_decoder", "use_discriminator")
# cv folder prefix -> the scheme the paper evaluates it with (sections 5 and 6: section 6 is speaker-independent)
SCHEMES = {"t3/*_10fold_": "10fold", "t3/*_loso_": "loso", "t4/": "cross_corpus", "t5/": "loso", "f3/": "loso_session",
           "f4/iemocap": "loso", "f4/msp_improv": "loso", "f4/librispeech": "10fold", "f5/": "loso"}


@pytest.fixture(scope="module")
def commands(tmp_path_factory) -> list[Command]:
    return recorded_commands({}, tmp_path_factory.mktemp("runbook") / "calls.log")


def option(argv, name: str, default=None):
    """The last value of ``--name`` in argv (later arguments win, as in LightningCLI)."""
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]
    return values[-1] if values else default


def training_args(cmd: Command) -> list[str]:
    """The arguments a cv/sweep/fit call hands to ``ser-mtl fit`` (its --cv.* and --sweep.* split off)."""
    _, rest = split_argv(list(cmd.argv[1:]), ("--cv.", "--sweep."))
    return rest


@cache
def resolve(args: tuple[str, ...]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["fit", *args, "--print_config"])
    assert done.value.code in (0, None), f"does not parse: {' '.join(args)}\n{out.getvalue()}"
    return yaml.safe_load(out.getvalue())


def weights(config: dict) -> tuple[float, float]:
    """The alpha and beta the model will use (null = paper 5.1's for its family and task)."""
    m = config["model"]
    alpha, beta = paper_weights(m["use_decoder"], m["use_discriminator"], config["data"]["task"])
    return (alpha if m["alpha"] is None else m["alpha"], beta if m["beta"] is None else m["beta"])


def experiments(commands: list[Command]) -> list[Command]:
    return [c for c in commands if c.subcommand in ("cv", "sweep")]


def out_dir(cmd: Command) -> str:
    return option(cmd.argv, "--cv.out")


def test_the_block_runs_and_calls_every_kind_of_command(commands):
    kinds = {c.subcommand for c in commands}
    assert {"fit", "cv", "sweep", "baseline", "compare", "report"} <= kinds
    outs = [out_dir(c) for c in experiments(commands)]
    assert len(outs) == len(set(outs)), "two experiments write into one folder"
    assert len(experiments(commands)) == 2 * (3 + 2 + 5 + 12 + 1 + 6) + 1 + 2


def test_pretraining_draws_600_speakers_for_speaker_and_gender_only(commands):
    fits = [c for c in commands if c.subcommand == "fit"]
    assert len(fits) == 3
    for cmd in fits:
        config = resolve(tuple(training_args(cmd)))
        assert config["data"]["corpus"] == "librispeech" and config["data"]["subset"] == "train-clean-360"
        assert config["data"]["speakers"] == 600 and config["data"]["seed"] == 0  # paper 4.1.3
        assert config["model"]["tasks"] == ["gender", "speaker"]  # paper 4.3


@pytest.mark.parametrize("prefix", sorted(SCHEMES))
def test_each_table_and_figure_uses_the_paper_scheme(commands, prefix):
    head, _, tail = prefix.partition("*")
    chosen = [c for c in experiments(commands) if out_dir(c).startswith("runs/" + head) and tail in out_dir(c)]
    assert chosen, prefix
    for cmd in chosen:
        assert resolve(tuple(training_args(cmd)))["data"]["scheme"] == SCHEMES[prefix], out_dir(cmd)


def test_every_emotion_model_starts_from_a_pretraining_of_its_own_layers(commands):
    fits = {option(c.argv, "--trainer.default_root_dir"): resolve(tuple(training_args(c)))
            for c in commands if c.subcommand == "fit"}
    for cmd in experiments(commands):
        config = resolve(tuple(training_args(cmd)))
        if config["data"]["corpus"] == "librispeech":
            continue  # Figure 4b-4d: the single-task LibriSpeech models themselves
        if option(cmd.argv, "--cv.pretrain") is not None:
            pretrain = resolve(tuple(option(cmd.argv, "--cv.pretrain").split()))
        else:
            init_from = config["model"]["init_from"]
            assert init_from, f"{out_dir(cmd)} is not pretrained (paper 4.3: all models are)"
            root = str(Path(init_from).parent.parent)
            assert root in fits, f"{out_dir(cmd)}: {init_from} is written by no command of the block"
            pretrain = fits[root]
        for key in ARCHITECTURE:
            assert pretrain["model"][key] == config["model"][key], (out_dir(cmd), key)


def test_auxiliary_speech_goes_exactly_to_models_with_an_auxiliary_task(commands):
    for cmd in experiments(commands):
        config = resolve(tuple(training_args(cmd)))
        if config["data"]["corpus"] == "librispeech":
            continue
        aux_task = bool({"gender", "speaker"} & set(config["model"]["tasks"]))
        swept_tasks = option(cmd.argv, "--sweep.param") == "model.tasks"
        assert config["data"]["aux_root"], f"{out_dir(cmd)} has no auxiliary corpus"
        name = out_dir(cmd)
        single = any(m in name for m in ("single_task_aae", "supervised_cnn", "semi_supervised_ae"))
        assert aux_task != single or swept_tasks, name  # the data module leaves aux speech out without one


def test_alpha_and_beta_are_the_paper_values_or_the_swept_ones(commands):
    for cmd in experiments(commands):
        config = resolve(tuple(training_args(cmd)))
        alpha, beta = weights(config)
        name, task = out_dir(cmd), config["data"]["task"]
        dimensional = task != "categorical"
        if name.endswith("_alpha"):
            assert (option(cmd.argv, "--sweep.param"), beta) == ("model.alpha", 0.5), name  # Figure 5, beta 0.5
        elif name.endswith("_beta"):
            assert (option(cmd.argv, "--sweep.param"), alpha) == ("model.beta", 1.0), name  # Figure 5, alpha 1
        elif "semi_supervised_ae" in name or "multitask_ae" in name:
            assert (alpha, beta) == ((0.6, 0.4) if dimensional else (0.3, 0.7)), name  # paper 5.1, AE
        elif config["model"]["use_discriminator"]:
            assert (alpha, beta) == ((0.3, 0.7) if dimensional else (0.4, 0.6)), name  # paper 5.1, AAE
        assert config["model"]["optimizer"] == "sgd", name  # under Adam alpha and beta would not act as weights


def test_figure_4_pretrains_and_fine_tunes_on_the_same_speakers(commands):
    emotion = [c for c in experiments(commands) if out_dir(c).endswith("_emotion")]
    assert len(emotion) == 2
    for cmd in emotion:
        assert option(cmd.argv, "--sweep.param") == "data.aux_speakers" and option(cmd.argv, "--cv.pretrain")
        pretrain = resolve(tuple(option(cmd.argv, "--cv.pretrain").split()))
        assert pretrain["data"]["corpus"] == "librispeech" and pretrain["data"]["seed"] == \
            resolve(tuple(training_args(cmd)))["data"]["seed"]
    single = [c for c in experiments(commands) if "f4/librispeech" in out_dir(c)]
    assert sorted(yaml.safe_load(option(c.argv, "--model.tasks"))[0] for c in single) == ["gender", "speaker"]
    for cmd in single:
        config = resolve(tuple(training_args(cmd)))
        task = config["model"]["tasks"][0]
        assert option(cmd.argv, "--sweep.param") == "data.speakers"
        assert config["checkpoint"]["monitor"] == f"val/{task}_acc"


# ------------------------------------------------------------------------------------ the block, run in miniature
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--data.num_workers", "0",
        "--data.features.n_bins", "32", "--data.segment_frames", "64", "--data.segment_hop", "32",
        "--data.verification_enrol", "2"]
SPEAKER_SWEEPS = ("data.aux_speakers", "data.speakers")


def miniature(cmd: Command, cache: Path) -> list[str]:
    """The call as written, plus: one epoch of two batches on 32 x 64 segments, 3 of the 4 generated LibriSpeech
    speakers instead of 600, fold 0 of two repeats (two pairs for `compare`) run in this process, the first two values of a
    sweep (speaker counts 0 and 3 or 2 and 3), and the same limits inside ``--cv.pretrain``."""
    argv = list(cmd.argv)
    if cmd.subcommand in ("compare", "report"):
        return argv
    data = TINY + ["--data.cache_dir", str(cache)]
    speakers = ["--data.speakers", "3"] if "configs/librispeech_pretrain.yaml" in argv else ["--data.aux_speakers", "3"]
    if "--cv.pretrain" in argv:
        i = argv.index("--cv.pretrain") + 1
        argv[i] = " ".join([argv[i], *data, "--data.speakers", "3"])
    if "--sweep.values" in argv:
        i = argv.index("--sweep.values") + 1
        values = yaml.safe_load(argv[i])
        if option(argv, "--sweep.param") in SPEAKER_SWEEPS:
            values = [v for v in ([0, 3] if values[0] == 0 else [2, 3])]
        argv[i] = yaml.safe_dump(values[:2], default_flow_style=True).strip()
    extra = data + speakers
    if cmd.subcommand in ("cv", "sweep"):
        extra += ["--cv.folds", "0", "--cv.repeats", "2", "--cv.in_process", "true"]
    return argv + extra


def selected(commands: list[Command]) -> list[Command]:
    """The first call of every README line, every pretraining, and the runs that compare/report read."""
    read = {a for c in commands if c.subcommand == "compare" for a in c.argv[1:] if not a.startswith("--")}
    seen, chosen = set(), []
    for cmd in commands:
        if cmd.line not in seen or cmd.subcommand == "fit" or out_dir(cmd) in read:
            chosen.append(cmd)
        seen.add(cmd.line)
    return chosen + [c for c in commands if c.subcommand in ("compare", "report") and c not in chosen]


@pytest.fixture(scope="module")
def msp_improv(tmp_path_factory) -> Path:
    from corpus_trees import make_msp_improv

    root = tmp_path_factory.mktemp("msp") / "MSP-IMPROV"
    make_msp_improv(root, sessions=(1, 2))
    return root


@pytest.mark.slow
def test_the_block_runs_in_miniature_and_leaves_what_the_report_needs(corpus, msp_improv, tmp_path, monkeypatch):
    env = {"IEMOCAP": str(corpus / "IEMOCAP_full_release"), "MSP": str(msp_improv), "LIBRI": str(corpus / "LibriSpeech")}
    commands = recorded_commands(env, tmp_path / "calls.log")
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(work)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    for cmd in selected(commands):
        argv = miniature(cmd, tmp_path / "cache")
        try:
            main(argv)
        except SystemExit as done:
            assert done.code in (0, None), f"README line {cmd.line}: ser-mtl {' '.join(argv)}"
    runs = work / "runs"
    for name in ("t3/iemocap_10fold_proposed", "t3/iemocap_loso_proposed", "t3/iemocap_loso_single_task_aae",
                 "t4/iemocap_to_msp_improv", "t3/iemocap_loso_egemaps"):
        summary = yaml.safe_load((runs / name / "summary.json").read_text())
        assert summary["complete"] and 0.0 <= summary["ua_mean"] <= 1.0, name
    for name in ("pretrain/proposed", "pretrain/multitask_ae", "pretrain/multitask_cnn"):
        assert (runs / name / "checkpoints" / "best.ckpt").is_file()
    fig4 = yaml.safe_load((runs / "f4/iemocap_emotion/sweep.json").read_text())
    assert len(fig4["settings"]) == 2
    assert (work / "report" / "fig4_speakers.png").is_file()
