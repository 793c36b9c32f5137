"""`ser-mtl export`: the ONNX network gives PyTorch's posteriors on onnxruntime (max abs diff < 1e-4)."""

import json

import numpy as np
import onnxruntime
import torch

from ser_mtl.cli import main
from ser_mtl.export_onnx import export, frontend_path
from ser_mtl.frontend import FrontEnd
from ser_mtl.inference import EmotionRecognizer, load_checkpoint


def test_export_matches_pytorch_on_real_segments(trained_run, corpus, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    out = tmp_path / "model.onnx"
    diff = export(str(ckpt), str(out))
    print(f"max abs diff on random segments: {diff:.3e}")
    assert diff < 1e-4 and "max abs diff" in capsys.readouterr().out
    settings = json.loads(frontend_path(out).read_text())
    model, frontend = load_checkpoint(ckpt)
    assert settings["classes"] == frontend.class_names and settings["mean"] == frontend.mean.tolist()

    # a recording prepared from the JSON settings alone, scored on onnxruntime, vs the Python API
    from_json = FrontEnd.from_state_dict(settings)
    wav = min((corpus / "IEMOCAP_full_release" / "Session1").rglob("*.wav"))
    from ser_mtl.data.audio import load_audio

    frames = from_json.frames(load_audio(wav, from_json.features.sample_rate))
    x = np.concatenate([b for _, b in from_json.batches(frames, 64)])  # (S, 1, F, W)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (onnx_probs,) = session.run(["posteriors"], {"segments": x})  # (S, C), any batch size
    with torch.no_grad():
        torch_probs = model.emotion_posteriors(torch.from_numpy(x)).numpy()
    real_diff = float(np.abs(onnx_probs - torch_probs).max())
    print(f"max abs diff on {len(x)} segments of {wav.name}: {real_diff:.3e}")
    assert real_diff < 1e-4
    api = EmotionRecognizer(model, frontend).classify_file(wav)
    np.testing.assert_allclose(onnx_probs.mean(axis=0), [api.probs[c] for c in frontend.class_names], atol=1e-4)


def test_export_command(trained_run, tmp_path, capsys):
    out = tmp_path / "sub" / "m.onnx"
    main(["export", "--ckpt", str(trained_run / "checkpoints" / "best.ckpt"), "--out", str(out)])
    assert out.is_file() and (tmp_path / "sub" / "m.frontend.json").is_file()
    assert not list((tmp_path / "sub").glob("*.tmp"))
