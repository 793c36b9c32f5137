"""Every shipped config parses (`--print_config`) and trains one batch (`fast_dev_run`) on generated corpora."""

import contextlib
import io
from pathlib import Path

import pytest
import yaml
from corpus_trees import make_iemocap, make_librispeech, make_msp_improv

from ser_mtl.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE = ["iemocap.yaml", "msp_improv.yaml", "librispeech_pretrain.yaml", "cross_corpus.yaml",
        "demo.yaml", "demo_pretrain.yaml"]
VARIANTS = sorted(str(p.relative_to(CONFIGS)) for p in (CONFIGS / "models").glob("*.yaml")) + \
    sorted(str(p.relative_to(CONFIGS)) for p in (CONFIGS / "tasks").glob("*.yaml"))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    make_iemocap(root / "IEMOCAP_full_release", sessions=(1, 2, 3), utts_per_dialog=8)
    make_msp_improv(root / "MSP-IMPROV", sessions=(1, 2, 3))
    make_librispeech(root / "LibriSpeech", subsets=("train-clean-360", "test-clean"))
    return root


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
    return args


def test_every_config_is_listed():
    shipped = {p.name for p in CONFIGS.glob("*.yaml")}
    assert shipped == set(BASE)
    assert len(VARIANTS) == 10  # 6 comparison models + 4 dimensional tasks


@pytest.mark.parametrize("config", BASE + [f"iemocap.yaml+{v}" for v in VARIANTS])
def test_print_config_parses(config):
    files = [a for f in config.split("+") for a in ("--config", str(CONFIGS / f))]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["fit", *files, "--print_config"])
    assert done.value.code == 0
    printed = yaml.safe_load(out.getvalue())
    assert {"data", "model", "trainer", "lr_schedule", "checkpoint"} <= set(printed)
    expected: dict = {}
    for f in config.split("+"):  # a later file's settings win over an earlier one's
        expected.update(yaml.safe_load((CONFIGS / f).read_text()).get("model") or {})
    for key, value in expected.items():
        assert yaml.safe_load(yaml.safe_dump(printed["model"][key])) == value, (config, key)


@pytest.mark.slow
@pytest.mark.parametrize("config", BASE + [f"iemocap.yaml+{v}" for v in VARIANTS])
def test_fast_dev_run(config, corpora, tmp_path):
    files = [a for f in config.split("+") for a in ("--config", str(CONFIGS / f))]
    run = tmp_path / "run"
    main(["fit", *files, *_overrides(config.split("+")[0], corpora), "--trainer.fast_dev_run", "true",
          "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(run),
          "--trainer.logger.init_args.save_dir", str(run)])
    # fast_dev_run trains exactly one batch and writes no checkpoint
    assert not (run / "checkpoints" / "best.ckpt").exists()
