"""`PretrainedFeatures` on tiny random transformers models (CPU, no network): the stored numbers are the
model's hidden states, batching and long-recording chunking do not change them, the key follows the weights.

The model builders (`tiny_wavlm`, `tiny_hubert`, `tiny_whisper`) are imported by other test files.
"""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from ser_mtl.data.extractor import FeatureExtractor, FeatureModelError, NoSpeechError, extractor_from_config
from ser_mtl.data.pretrained import PretrainedFeatures, conv_frames, plan_batches, split_pieces

SR = 16000
# transformers' own test sizes (tests/models/wavlm/test_modeling_wavlm.py): 250 frames/s, 148-sample field
TINY_W2V2 = {"hidden_size": 16, "conv_dim": (32, 32, 32), "conv_stride": (4, 4, 4), "conv_kernel": (8, 8, 8),
             "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 20,
             "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "vocab_size": 32}
CONV = ((8, 4), (8, 4), (8, 4))


def _save_w2v2(model: torch.nn.Module, folder: str | Path) -> str:
    model.save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0,
                                          return_attention_mask=True, do_normalize=True).save_pretrained(folder)
    return str(folder)


def tiny_wavlm(folder: str | Path, feat_extract_norm: str = "layer", seed: int = 0) -> str:
    """A random 2-layer, 16-dim WavLM (+ its Wav2Vec2FeatureExtractor) saved in ``folder``; returns it."""
    torch.manual_seed(seed)
    config = transformers.WavLMConfig(**TINY_W2V2, feat_extract_norm=feat_extract_norm)
    return _save_w2v2(transformers.WavLMModel(config), folder)


def tiny_hubert(folder: str | Path, feat_extract_norm: str = "group", seed: int = 0) -> str:
    """A random 2-layer, 16-dim HuBERT (+ its Wav2Vec2FeatureExtractor) saved in ``folder``; returns it."""
    torch.manual_seed(seed)
    config = transformers.HubertConfig(**TINY_W2V2, feat_extract_norm=feat_extract_norm)
    return _save_w2v2(transformers.HubertModel(config), folder)


def tiny_whisper(folder: str | Path, seed: int = 0) -> str:
    """A random Whisper (2 encoder layers, d_model 16, 80 mels, 30 s windows) + WhisperFeatureExtractor."""
    torch.manual_seed(seed)
    config = transformers.WhisperConfig(d_model=16, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
                                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                                        num_mel_bins=80, max_source_positions=1500, vocab_size=64,
                                        max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                        decoder_start_token_id=1)
    transformers.WhisperModel(config).save_pretrained(folder)
    transformers.WhisperFeatureExtractor().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {"wavlm": tiny_wavlm(root / "wavlm"), "hubert": tiny_hubert(root / "hubert"),
            "wavlm_group": tiny_wavlm(root / "wavlm_group", "group"), "whisper": tiny_whisper(root / "whisper")}


def speechy(n: int, seed: int = 0) -> torch.Tensor:
    """(n,) noise under a slow tone envelope: loud everywhere, so silence trimming keeps all of it."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    return (0.1 * torch.randn(n, generator=g) * (1.2 + torch.sin(2 * math.pi * 3 * t))).float()


def direct(folder: str, wave: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple:
    """hidden_states of the saved model on the preprocessed (B, T) or (T,) ``wave``, computed here."""
    model = transformers.AutoModel.from_pretrained(folder).eval()
    pre = transformers.AutoFeatureExtractor.from_pretrained(folder)
    values = wave[None] if wave.ndim == 1 else wave
    if attention_mask is None:
        values = pre(values[0].numpy(), sampling_rate=SR, return_tensors="pt")["input_values"]  # (1, T)
    with torch.no_grad():
        return model(values, attention_mask=attention_mask, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("name", ["wavlm", "hubert"])
@pytest.mark.parametrize("layers,mode", [([1], "mean"), ([0], "mean"), ([0, 2], "mean"), ([2, 0], "stack")])
def test_features_are_the_models_hidden_states(models, name, layers, mode):
    ext = PretrainedFeatures(models[name], layers=layers, layer_mode=mode, trim_silence=False)
    wave = speechy(16000)
    out = ext.extract(wave)  # (rows, frames) float16
    hidden = direct(models[name], wave)  # 3 x (1, frames, 16)
    per_layer = [hidden[i][0].T.numpy() for i in layers]  # (16, frames) each
    want = np.mean(per_layer, axis=0) if mode == "mean" else np.concatenate(per_layer)
    assert out.dtype == np.float16 and out.shape == want.shape == (ext.rows, conv_frames(16000, CONV)) == (
        16 * (len(layers) if mode == "stack" else 1), 248)
    np.testing.assert_array_equal(out, want.astype(np.float16))
    assert ext.frames_per_second == 250 and ext.channels == (len(layers) if mode == "stack" else 1)
    assert ext.settings()["layers"] == layers and ext.num_layers == 2 and ext.hidden_size == 16
    assert len(ext.module().encoder.layers) == min(2, max(layers) + 1)  # later layers are never run


def test_batched_equals_one_at_a_time(models):
    ext = PretrainedFeatures(models["wavlm"], layers=[1, 2], layer_mode="stack", trim_silence=False)
    waves = [speechy(n, seed=n) for n in (3000, 16000, 5200, 9100, 12345)]
    assert plan_batches([len(w) for w in waves], budget=ext.batch_seconds * SR, equal_only=False) == [
        [1, 4, 3, 2, 0]]  # one padded batch
    masks = []
    hook = ext.module().register_forward_pre_hook(
        lambda _, args, kwargs: masks.append(kwargs.get("attention_mask") is not None), with_kwargs=True)
    batched = ext.features_batch(waves)
    assert masks == [True]  # padded: the mask is passed
    one = [ext.features(w) for w in waves]
    assert masks == [True] + [False] * 5  # alone: no padding, no mask
    hook.remove()
    for b, o, w in zip(batched, one, waves):
        assert b.shape == o.shape == (32, conv_frames(len(w), CONV))
        assert (b - o).abs().max() < 1e-4
    for b, w in zip(ext.extract_batch(waves), waves):  # equal up to float16 rounding of 1e-6 differences
        np.testing.assert_allclose(b.astype(np.float32), ext.extract(w).astype(np.float32), rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(ext.extract_batch([w])[0], ext.extract(w))


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # WavLM with a mask, in torch
def test_group_norm_models_batch_only_equal_lengths(models):
    lengths = [4000, 9000, 6000, 4000, 9000]
    assert plan_batches(lengths, 10 ** 9, equal_only=True) == [[1, 4], [2], [0, 3]]
    assert plan_batches(lengths, 18000, equal_only=False) == [[1, 4], [2, 0, 3]]  # budget: 2 x 9000 samples
    waves = [speechy(n, seed=i) for i, n in enumerate(lengths)]
    for name in ("hubert", "wavlm_group"):
        ext = PretrainedFeatures(models[name], layers=[2], trim_silence=False)
        for b, w in zip(ext.features_batch(waves), waves):
            assert (b - ext.features(w)).abs().max() < 1e-4
    # Naive zero padding (with the mask) is NOT equal for group norm, but is for the layer-norm model.
    pre = transformers.Wav2Vec2FeatureExtractor.from_pretrained(models["hubert"])
    values = [torch.from_numpy(pre(w.numpy(), sampling_rate=SR)["input_values"][0]) for w in waves[:2]]
    batch, mask = torch.zeros(2, 9000), torch.zeros(2, 9000, dtype=torch.long)
    for b, v in enumerate(values):
        batch[b, :len(v)], mask[b, :len(v)] = v, 1
    n = conv_frames(4000, CONV)
    for name, equal in (("hubert", False), ("wavlm_group", False), ("wavlm", True)):
        alone = direct(models[name], waves[0])[2][0, :n]  # (n, 16)
        padded = direct(models[name], batch, mask)[2][0, :n]
        assert ((padded - alone).abs().max() < 1e-4) == equal, name


def test_key_follows_the_weights(tmp_path):
    folder = tiny_wavlm(tmp_path / "a" / "model", seed=0)
    first = PretrainedFeatures(folder, layers=[1])
    key, sha = first.key(), first.weights_sha256
    copy = tmp_path / "b" / "model"
    shutil.copytree(folder, copy)
    moved = PretrainedFeatures(str(copy), layers=[1])
    assert moved.key() == key and moved.settings() == first.settings()  # same name and weights
    assert first.settings()["model"] == "model" and len(sha) == 64
    tiny_wavlm(folder, seed=1)  # other random weights at the same path
    changed = PretrainedFeatures(folder, layers=[1])
    assert changed.weights_sha256 != sha and changed.key() != key
    assert PretrainedFeatures(folder, layers=[1], batch_seconds=5.0).key() == changed.key()  # not a setting
    assert PretrainedFeatures(folder, layers=[2]).key() != changed.key()


def test_unusable_settings_and_missing_models(models, tmp_path, monkeypatch):
    for layers in ([3], [-4], [0, -4]):
        with pytest.raises(ValueError, match=r"valid indices are -3\.\.2"):
            PretrainedFeatures(models["wavlm"], layers=layers).settings()
    assert PretrainedFeatures(models["wavlm"], layers=[-1, -3]).settings()["layers"] == [2, 0]
    with pytest.raises(ValueError, match="non-empty list"):
        PretrainedFeatures(models["wavlm"], layers=[])
    with pytest.raises(ValueError, match="layer_mode"):
        PretrainedFeatures(models["wavlm"], layers=[1], layer_mode="sum")
    with pytest.raises(ValueError, match="chunk_seconds"):
        PretrainedFeatures(models["wavlm"], layers=[1], chunk_seconds=0.01).settings()  # < 2 x 148 samples
    missing = tmp_path / "nowhere" / "wavlm"
    with pytest.raises(FeatureModelError, match=str(missing)):
        PretrainedFeatures(str(missing), layers=[1]).check()
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FeatureModelError) as err:
        PretrainedFeatures("someone/wavlm-nowhere", layers=[1]).key()
    message = str(err.value)
    assert "someone/wavlm-nowhere" in message and "--data.features.init_args.model" in message
    assert "hf download someone/wavlm-nowhere" in message and "\n" not in message


def test_check_recorded_names_both_hashes(models):
    ext = PretrainedFeatures(models["wavlm"], layers=[1])
    ext.check_recorded(ext.settings(), "run/best.ckpt")  # same settings: fine
    other = "ab" * 32
    with pytest.raises(FeatureModelError, match=f"run/best.ckpt.*other weights.*{other}.*{ext.weights_sha256}"):
        ext.check_recorded({**ext.settings(), "weights_sha256": other}, "run/best.ckpt")
    with pytest.raises(FeatureModelError, match="run/best.ckpt.*differ in layers"):
        ext.check_recorded({**ext.settings(), "layers": [2]}, "run/best.ckpt")


def test_long_recordings_are_cut_into_equal_chunks(models):
    ext = PretrainedFeatures(models["wavlm"], layers=[2], trim_silence=False, chunk_seconds=0.5)
    wave = speechy(20800, seed=3)  # 1.3 s: 3 chunks of 0.43 s
    pieces = split_pieces(20800, 8000)
    assert pieces == [(0, 6933), (6933, 13867), (13867, 20800)]
    out = ext.features(wave)
    assert out.shape == (16, sum(conv_frames(b - a, CONV) for a, b in pieces))
    want = torch.cat([ext.features(wave[a:b]) for a, b in pieces], dim=1)
    assert (out - want).abs().max() < 1e-4
    whole = PretrainedFeatures(models["wavlm"], layers=[2], trim_silence=False)
    assert whole.features(wave).shape[1] == conv_frames(20800, CONV) != out.shape[1]


def test_whisper_encoder_frames(models):
    ext = PretrainedFeatures(models["whisper"], layers=[1, -1], layer_mode="stack", trim_silence=False)
    assert ext.frames_per_second == 50 and ext.sample_rate == SR and ext.rows == 32 and ext.num_layers == 2
    wave = speechy(16000)
    out = ext.extract(wave)
    n = math.ceil((16000 // 160 + 1) / 2)  # 51 frames cover 1 s
    encoder = transformers.AutoModel.from_pretrained(models["whisper"]).get_encoder().eval()
    mel = transformers.WhisperFeatureExtractor.from_pretrained(models["whisper"])(
        wave.numpy(), sampling_rate=SR, return_tensors="pt")["input_features"]  # (1, 80, 3000)
    with torch.no_grad():
        hidden = encoder(mel, output_hidden_states=True).hidden_states  # 3 x (1, 1500, 16)
    want = torch.cat([hidden[1][0, :n].T, hidden[2][0, :n].T]).numpy()
    assert out.shape == want.shape == (32, 51)
    np.testing.assert_allclose(out.astype(np.float32), want, rtol=1e-3, atol=1e-3)
    chunked = PretrainedFeatures(models["whisper"], layers=[1], trim_silence=False, chunk_seconds=0.5)
    sizes = [b - a for a, b in split_pieces(20800, 8000)]
    assert chunked.features(speechy(20800)).shape == (16, sum(math.ceil((s // 160 + 1) / 2) for s in sizes))


def test_silence_gives_no_speech_in_its_place(models):
    ext = PretrainedFeatures(models["wavlm"], layers=[1])
    out = ext.extract_batch([speechy(8000), torch.zeros(8000), speechy(6000, seed=1)])
    assert isinstance(out[1], NoSpeechError) and "digital silence" in str(out[1])
    assert out[0].shape == (16, conv_frames(8000, CONV)) and out[2].shape == (16, conv_frames(6000, CONV))
    with pytest.raises(NoSpeechError, match="receptive field"):
        ext.extract(speechy(100))  # fewer than 148 samples
    with pytest.raises(NoSpeechError):
        ext.extract(torch.zeros(4000))


def test_config_round_trip_and_pickle(models):
    ext = PretrainedFeatures(models["wavlm"], layers=[0, 2], layer_mode="stack", silence_db=35,
                             chunk_seconds=20)
    spec = ext.config()
    assert spec["class_path"] == "ser_mtl.data.pretrained.PretrainedFeatures"
    again = extractor_from_config(spec)
    assert isinstance(again, PretrainedFeatures) and again == ext and again.key() == ext.key()
    # what the fit prints at its start: model, weights hash, layers, rows (2 x 16) and frame rate (16 kHz / 64)
    assert ext.describe() == (f"wavlm {Path(models['wavlm']).name} (weights sha256 {ext.weights_sha256[:12]}), "
                              "hidden states [0, 2] of 0..2 (stack): 32 rows at 250 frames/s, float32 on cpu")
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--features", type=FeatureExtractor)
    yaml = (f"features:\n  class_path: ser_mtl.data.pretrained.PretrainedFeatures\n  init_args:\n"
            f"    model: {models['wavlm']}\n    layers: [0, 2]\n    layer_mode: stack\n    silence_db: 35\n"
            f"    chunk_seconds: 20\n")
    parsed = parser.instantiate(parser.parse_string(yaml)).features
    assert parsed.init_args() == ext.init_args() and parsed.key() == ext.key()
    wave = speechy(8000)
    before = ext.check().extract(wave)
    blob = pickle.dumps(ext)
    assert len(blob) < 100_000  # the model stays behind
    np.testing.assert_array_equal(pickle.loads(blob).extract(wave), before)


def test_bfloat16_is_close_and_keyed(models):
    ext = PretrainedFeatures(models["wavlm"], layers=[2], trim_silence=False)
    bf16 = PretrainedFeatures(models["wavlm"], layers=[2], trim_silence=False, dtype="bfloat16")
    wave = speechy(8000)
    assert bf16.key() != ext.key()
    assert (bf16.features(wave) - ext.features(wave)).abs().max() < 0.1
