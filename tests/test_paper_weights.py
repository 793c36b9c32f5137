"""Paper 5.1's alpha/beta follow the model family and the label task, whatever the order of --config files
(issue: a task config stacked after --model.beta 0.5 reset beta, and the AE's dimensional weights 0.6 / 0.4
existed nowhere)."""

import pytest

from ser_mtl.lightning_cli import run_lightning_cli
from ser_mtl.models.aae import MultiTaskAAE
from ser_mtl.models.paper_weights import paper_weights


def test_the_table_of_paper_5_1():
    assert paper_weights(True, True, "categorical") == (0.4, 0.6)   # AAE
    assert paper_weights(True, True, "valence") == (0.3, 0.7)
    assert paper_weights(True, False, "categorical") == (0.3, 0.7)  # AE
    assert paper_weights(True, False, "activation") == (0.6, 0.4)
    assert paper_weights(True, False, "av5") == (0.6, 0.4)
    assert paper_weights(False, False, "categorical") == (0.4, 0.6)  # CNN: the AAE's (paper silent)
    with pytest.raises(ValueError, match="label_task"):
        paper_weights(True, True, "arousal")


def test_explicit_weights_win_and_the_resolved_ones_are_saved():
    model = MultiTaskAAE(tasks=["emotion"], use_discriminator=False, label_task="activation", beta=0.5,
                         input_size=(32, 32), encoder_channels=(4, 4), encoder_pools=((2, 2), (2, 2)))
    assert (model.hparams.alpha, model.hparams.beta) == (0.6, 0.5)


def _model(corpus, tmp_path, *configs_and_overrides):
    args = ["--config", "configs/demo.yaml", *configs_and_overrides,
            "--data.root", str(corpus / "IEMOCAP_full_release"), "--data.aux_root", str(corpus / "LibriSpeech"),
            "--data.cache_dir", str(tmp_path / "cache"), "--trainer.logger", "false"]
    return run_lightning_cli(args, run=False).model


@pytest.mark.parametrize("order", ["task_first", "model_first"])
def test_the_ae_on_a_dimensional_task_gets_0_6_and_0_4_in_either_order(corpus, tmp_path, order):
    files = ["--config", "configs/models/semi_supervised_ae.yaml", "--config", "configs/tasks/activation.yaml"]
    if order == "task_first":
        files = files[2:] + files[:2]
    model = _model(corpus, tmp_path, *files)
    assert (model.hparams.alpha, model.hparams.beta, model.hparams.label_task) == (0.6, 0.4, "activation")


def test_a_task_config_after_model_beta_keeps_beta(corpus, tmp_path):
    model = _model(corpus, tmp_path, "--model.beta", "0.5", "--config", "configs/tasks/valence.yaml")
    assert (model.hparams.alpha, model.hparams.beta) == (0.3, 0.5)  # the AAE's dimensional alpha, beta as set
