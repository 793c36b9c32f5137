"""Every shipped config parses (`--print_config`) and trains one batch (`fast_dev_run`) on generated corpora.

The experiment configs share their network through a top-level ``config: networks/NAME.yaml`` line (a path
relative to the including file's folder) and state what differs as dotted ``model.KEY`` keys; the tests below
check that each resolved model section is that network plus the stated keys, and that pretraining and
fine-tuning configs build the same layers (their weights must carry over with --model.init_from).
"""

import contextlib
import io
from pathlib import Path

import pytest
import yaml
from corpus_trees import make_iemocap, make_librispeech, make_msp_improv

from ser_mtl.cli import main
from ser_mtl.lightning_cli import run_lightning_cli

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = ["iemocap.yaml", "msp_improv.yaml", "librispeech_pretrain.yaml", "cross_corpus.yaml",
        "demo.yaml", "demo_pretrain.yaml"]
# Pretrained-model front-ends: a base config plus the features and input stage (their model is not on disk
# here; tests/test_ssl_pipeline.py runs the same configs on a tiny model built from a config).
SSL = ["iemocap_wavlm.yaml", "librispeech_pretrain_wavlm.yaml"]
# Other corpora in their own class sets: iemocap.yaml's model on another reader, classes and scheme
# (tests/test_class_sets.py runs them on generated trees).
OTHER_CORPORA = ["crema_d.yaml", "ravdess.yaml", "msp_podcast.yaml", "msp_podcast_dimensions.yaml"]
VARIANTS = sorted(str(p.relative_to(CONFIGS)) for p in (CONFIGS / "models").glob("*.yaml")) + \
    sorted(str(p.relative_to(CONFIGS)) for p in (CONFIGS / "tasks").glob("*.yaml"))
NETWORKS = {"paper.yaml": ["iemocap.yaml", "msp_improv.yaml", "librispeech_pretrain.yaml", "cross_corpus.yaml", *SSL,
                           *OTHER_CORPORA],
            "demo.yaml": ["demo.yaml", "demo_pretrain.yaml"]}
# (pretraining config, fine-tuning config): --model.init_from loads the first one's weights into the second.
PRETRAIN_FINETUNE = [("demo_pretrain.yaml", "demo.yaml")] + \
    [("librispeech_pretrain.yaml", c) for c in ("iemocap.yaml", "msp_improv.yaml", "cross_corpus.yaml")] + \
    [("librispeech_pretrain_wavlm.yaml", "iemocap_wavlm.yaml")]
# What decides the layers and their weights' shapes (the heads' flatten width depends on the input size too).
ARCHITECTURE = ["encoder_channels", "encoder_pools", "head_conv_channels", "head_hidden", "head_pool", "dropout",
                "use_decoder", "use_discriminator", "input_stage"]


def _print_config(*files: str, extra: tuple[str, ...] = ()) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["fit", *(a for f in files for a in ("--config", str(CONFIGS / f))), *extra, "--print_config"])
    assert done.value.code == 0
    return yaml.safe_load(out.getvalue())


def _plain(value):
    """Tuples as lists, as YAML reads them back."""
    return yaml.safe_load(yaml.safe_dump(value))


def _own_model_keys(path: Path) -> dict:
    """The model keys a file states itself: its dotted `model.KEY` keys and its `model:` block."""
    text = yaml.safe_load(path.read_text()) or {}
    own = dict(text.get("model") or {})
    own.update({key.split(".", 1)[1]: value for key, value in text.items() if key.startswith("model.")})
    return own


def _stated_model(path: Path) -> dict:
    """The model keys a file sets: those of the file its `config:` line includes, then its own."""
    text = yaml.safe_load(path.read_text()) or {}
    stated = _stated_model(path.parent / text["config"]) if "config" in text else {}
    stated.update(_own_model_keys(path))
    return stated


def _network_of(config: str) -> str:
    include = yaml.safe_load((CONFIGS / config).read_text()).get("config")
    assert include, f"{config} does not include a configs/networks/ file"
    return include if include.startswith("networks/") else _network_of(include)  # through a base config

@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    make_iemocap(root / "IEMOCAP_full_release", sessions=(1, 2, 3), utts_per_dialog=8)
    make_msp_improv(root / "MSP-IMPROV", sessions=(1, 2, 3))
    make_librispeech(root / "LibriSpeech", subsets=("train-clean-360", "test-clean"))
    return root


# What `corpora` writes: IEMOCAP 3 sessions x 3 dialogs x 8 turns, MSP-IMPROV 3 sessions x 24 utterances,
# LibriSpeech train-clean-360 3 speakers x 4 utterances (corpus_trees.py; its summaries say the same).
CORPUS_ROWS = {"iemocap": 72, "msp_improv": 72, "librispeech": 12}
CORPUS_SPEAKERS = {"iemocap": 6, "msp_improv": 6, "librispeech": 3}
# Paper 5.1's (alpha, beta) by model family and label kind; the CNNs (no reconstruction) take the AAE's.
PAPER_5_1 = {("aae", "categorical"): (0.4, 0.6), ("aae", "dimensional"): (0.3, 0.7),
             ("ae", "categorical"): (0.3, 0.7), ("ae", "dimensional"): (0.6, 0.4)}


def _overrides(config: str, root: Path) -> list[str]:
    data = yaml.safe_load((CONFIGS / config).read_text())["data"]
    roots = {"iemocap": root / "IEMOCAP_full_release", "msp_improv": root / "MSP-IMPROV",
             "librispeech": root / "LibriSpeech"}
    args = ["--data.root", str(roots[data["corpus"]]), "--data.cache_dir", str(root / "cache"),
            "--data.num_workers", "0"]
    if data.get("aux_root"):
        args += ["--data.aux_root", str(roots["librispeech"]), "--data.aux_speakers", "null"]
    if data.get("target_root"):
        args += ["--data.target_root", str(roots["msp_improv"])]
    if data.get("speakers"):  # the miniature LibriSpeech has 3 speakers, not 600
        args += ["--data.speakers", "null"]
    return args


def test_every_config_is_listed():
    shipped = {p.name for p in CONFIGS.glob("*.yaml")}
    assert shipped == set(BASE + SSL + OTHER_CORPORA)
    assert len(VARIANTS) == 11  # 6 comparison models + categorical + 4 dimensional tasks
    assert {p.name for p in (CONFIGS / "networks").glob("*.yaml")} == set(NETWORKS)
    for network, users in NETWORKS.items():
        for config in users:
            assert _network_of(config) == f"networks/{network}", config


@pytest.mark.parametrize("config", BASE + SSL + OTHER_CORPORA + [f"iemocap.yaml+{v}" for v in VARIANTS])
def test_print_config_parses(config):
    printed = _print_config(*config.split("+"))
    assert {"data", "model", "trainer", "lr_schedule", "checkpoint"} <= set(printed)
    expected: dict = {}
    for f in config.split("+"):  # a later file's settings win over an earlier one's
        expected.update(_stated_model(CONFIGS / f))
    for key, value in expected.items():
        assert _plain(printed["model"][key]) == value, (config, key)


@pytest.mark.parametrize("config", BASE)
def test_model_section_is_its_network_plus_its_own_keys(config):
    text = yaml.safe_load((CONFIGS / config).read_text())
    # A `model:` block next to the `config:` include replaces the included model section as a whole
    # (jsonargparse 4.53), so a config's own model keys are written dotted: `model.lr: 0.001`.
    assert "model" not in text, f"{config}: write model keys as `model.KEY: value` next to `config:`"
    expected = _plain(_print_config(_network_of(config))["model"])
    own = _own_model_keys(CONFIGS / config)
    assert set(own) <= set(expected), (config, set(own) - set(expected))
    expected.update(own)
    assert _plain(_print_config(config)["model"]) == expected


def test_a_network_key_given_on_the_command_line_wins():
    model = _print_config("demo.yaml", extra=("--model.lr", "0.01"))["model"]
    assert model["lr"] == 0.01
    assert _plain(model["encoder_channels"]) == [16, 24, 32]  # the rest of networks/demo.yaml stays


@pytest.mark.parametrize(("pretrain", "finetune"), PRETRAIN_FINETUNE)
def test_pretraining_and_fine_tuning_build_the_same_network(pretrain, finetune):
    first, second = _print_config(pretrain), _print_config(finetune)
    assert _network_of(pretrain) == _network_of(finetune)
    assert {k: _plain(first["model"][k]) for k in ARCHITECTURE} == \
        {k: _plain(second["model"][k]) for k in ARCHITECTURE}
    assert first["data"]["features"] == second["data"]["features"]
    assert first["data"]["segment_frames"] == second["data"]["segment_frames"]
    assert set(first["model"]["tasks"]) <= set(second["model"]["tasks"])  # every pretrained head is fine-tuned


@pytest.mark.slow
@pytest.mark.parametrize("config", BASE + [f"iemocap.yaml+{v}" for v in VARIANTS])
def test_fast_dev_run(config, corpora, tmp_path):
    files = [a for f in config.split("+") for a in ("--config", str(CONFIGS / f))]
    run = tmp_path / "run"
    # `ser-mtl fit` is this call inside main()'s error handling; it hands back the trainer, model and data
    cli = run_lightning_cli(["fit", *files, *_overrides(config.split("+")[0], corpora), "--trainer.fast_dev_run",
                             "true", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(run),
                             "--trainer.logger.init_args.save_dir", str(run)])
    # fast_dev_run trains exactly one batch and writes no checkpoint
    assert cli.trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1
    assert not (run / "checkpoints" / "best.ckpt").exists()
    # the network that trained is the one the config files state, on the segments the data section states
    stated: dict = {}
    for f in config.split("+"):
        stated.update(_stated_model(CONFIGS / f))
    hparams = cli.model.hparams
    data = _print_config(*config.split("+"))["data"]
    family = "aae" if stated["use_discriminator"] else "ae" if stated["use_decoder"] else "cnn"
    kind = "categorical" if data["task"] == "categorical" else "dimensional"
    for key, value in zip(("alpha", "beta"), PAPER_5_1[("aae" if family == "cnn" else family, kind)]):
        if stated.get(key) is None:  # null in the network file: paper 5.1's value for the family and task
            stated[key] = value
    assert {key: _plain(hparams[key]) for key in stated} == stated
    assert tuple(hparams["input_size"]) == (data["features"]["init_args"]["n_bins"], data["segment_frames"])
    # every generated utterance of the corpus is in the manifest; speakers = training speakers + auxiliary ones
    dm = cli.datamodule
    assert len(dm.rows) == CORPUS_ROWS[data["corpus"]]
    assert len({r.speaker for r in dm.rows}) == CORPUS_SPEAKERS[data["corpus"]]
    aux = CORPUS_SPEAKERS["librispeech"] if data.get("aux_root") and "speaker" in hparams["tasks"] else 0
    train_speakers = {dm.rows[i].speaker for i in dm.train_indices()}
    assert hparams["num_speakers"] == len(train_speakers) + aux
