"""`ser-mtl sweep` argument handling: the values list reaches the sweep intact."""

from ser_mtl.runs import sweep


def test_sweep_main_passes_params_values_and_the_rest(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(sweep, "run_sweep", lambda *args, **kwargs: calls.append((args, kwargs)))
    sweep.sweep_main(["--config", "configs/demo.yaml", "--model.beta", "0.5", "--sweep.param", "model.tasks",
                      "--sweep.values", "[[emotion,gender],[emotion,speaker]]", "--cv.out", str(tmp_path),
                      "--cv.folds", "0,1", "--cv.repeats", "2"])
    (config_args, params, values, out, mode), options = calls[0]
    assert config_args == ["--config", "configs/demo.yaml", "--model.beta", "0.5"]
    assert params == ["model.tasks"] and values == [["emotion", "gender"], ["emotion", "speaker"]]
    assert out == str(tmp_path) and mode == "zip"
    assert options["repeats"] == 2
