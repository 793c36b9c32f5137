"""`ser-mtl baseline`: utterance statistics + logistic regression on the fit's own split and features."""

import json

import numpy as np
import pytest

from ser_mtl.cli import main
from ser_mtl.experiments.baseline import utterance_statistics


def test_utterance_statistics_by_hand():
    frames = np.array([[0.0, 2.0, 4.0], [1.0, 1.0, 4.0]])  # (F=2, T=3)
    # row means 2, 2; stds sqrt(8/3), sqrt(2); deltas [2, 2] and [0, 3]: means 2, 1.5, stds 0, 1.5
    np.testing.assert_allclose(utterance_statistics(frames),
                               [2, 2, np.sqrt(8 / 3), np.sqrt(2), 2, 1.5, 0, 1.5])
    np.testing.assert_allclose(utterance_statistics(frames, "std"), [np.sqrt(8 / 3), np.sqrt(2), 0, 1.5])
    # a constant level added to every frame moves the means and nothing else
    np.testing.assert_allclose(utterance_statistics(frames + 3.0, "std"), utterance_statistics(frames, "std"))
    with pytest.raises(ValueError, match="stats"):
        utterance_statistics(frames, "median")


@pytest.mark.slow
@pytest.mark.parametrize("stats", ["mean_std", "std"])
def test_baseline_command_scores_the_test_session(corpus, tmp_path, stats, capsys):
    out = tmp_path / "baseline.json"
    main(["baseline", "--config", "configs/demo.yaml",
          "--data.root", str(corpus / "IEMOCAP_full_release"), "--data.aux_root", str(corpus / "LibriSpeech"),
          "--data.cache_dir", str(tmp_path / "cache"), "--trainer.logger", "false",
          "--baseline.out", str(out), "--baseline.stats", stats])
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert f"UA {100 * result['ua']:.2f} %" in printed
    # loso_session fold 0 tests session 1: its utterances of the four classes, each once
    from ser_mtl.lightning_cli import build_datamodule

    dm = build_datamodule(["--config", "configs/demo.yaml", "--data.root", str(corpus / "IEMOCAP_full_release"),
                           "--data.aux_root", str(corpus / "LibriSpeech"), "--data.cache_dir", str(tmp_path / "cache")])
    test_rows = [dm.rows[i] for i in dm.split.test]
    assert {r.session for r in test_rows} == {"1"}
    assert result["n_utterances"] == sum(dm.label_scheme.encode(r) >= 0 for r in test_rows) > 0
    assert result["stats"] == stats and result["classes"] == ["angry", "happy", "neutral", "sad"]
    assert 0.0 <= result["ua"] <= 1.0 and 0.0 <= result["wa"] <= 1.0 and result["C"] in (0.001, 0.01, 0.1, 1.0, 10.0)
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--config", "configs/demo.yaml", "--baseline.stats", "median"])
    assert exit_info.value.code == 2 and "--baseline.stats" in capsys.readouterr().err
