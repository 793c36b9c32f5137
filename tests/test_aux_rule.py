"""Auxiliary speech only where a task can use it, whatever the order of the arguments (issue: the supervised
CNN baseline used to train with half of every batch taken from LibriSpeech segments no part of it uses)."""

import pytest

from ser_mtl.lightning_cli import build_datamodule


def _args(corpus, tmp_path, *middle):
    return ["--config", "configs/demo.yaml", *middle, "--data.root", str(corpus / "IEMOCAP_full_release"),
            "--data.aux_root", str(corpus / "LibriSpeech"), "--data.cache_dir", str(tmp_path / "cache")]


@pytest.mark.parametrize("variant", ["supervised_cnn", "single_task_aae", "semi_supervised_ae"])
def test_emotion_only_models_get_no_auxiliary_speech_even_with_aux_root_last(corpus, tmp_path, variant):
    dm = build_datamodule(_args(corpus, tmp_path, "--config", f"configs/models/{variant}.yaml"))
    assert dm.hparams.model_tasks == ["emotion"] and dm.aux_rows == [] and dm.verification_rows == []
    assert "auxiliary corpus" in dm.describe() and "not used: the model has no gender or speaker task" in dm.describe()


def test_a_model_with_an_auxiliary_task_gets_the_auxiliary_corpus(corpus, tmp_path):
    dm = build_datamodule(_args(corpus, tmp_path, "--config", "configs/models/supervised_cnn.yaml",
                                "--model.tasks", "[emotion, gender]"))
    assert dm.hparams.model_tasks == ["emotion", "gender"]
    assert len(dm.aux_rows) == 16 and {r.corpus for r in dm.aux_rows} == {"librispeech"}  # 4 speakers x 4
    assert "not used" not in dm.describe()


def test_describe_names_the_front_end_and_the_segment_seconds(corpus, tmp_path):
    dm = build_datamodule(_args(corpus, tmp_path))
    assert "features: LogSpectrogram, 64 rows at 100 frames/s; segments of 128 frames = 1.28 s; class_map " \
           "{'excited': 'happy'}" in dm.describe()
