"""The Python API on a trained checkpoint: the same posteriors as `ser-mtl test` and `ser-mtl classify`."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser_mtl.cli import main
from ser_mtl.inference import CheckpointError, EmotionRecognizer, load_checkpoint


class Payload:
    """An arbitrary class: pickling it puts code references into the checkpoint."""


@pytest.fixture(scope="module")
def recognizer(trained_run) -> EmotionRecognizer:
    return EmotionRecognizer.from_checkpoint(trained_run / "checkpoints" / "best.ckpt")


def _wav_dir(corpus: Path) -> Path:
    return corpus / "IEMOCAP_full_release" / "Session1" / "sentences" / "wav"


def test_api_gives_the_test_runs_utterance_posteriors(recognizer, trained_run, corpus):
    with open(trained_run / "predictions.csv") as handle:
        tested = {r["utt_id"]: r for r in csv.DictReader(handle)}
    predictions = recognizer.classify(_wav_dir(corpus))  # a folder, searched recursively
    assert len(predictions) == len(list(_wav_dir(corpus).rglob("*.wav")))
    scored = [p for p in predictions if Path(p.source).stem in tested]  # the 4-class test utterances
    assert len(scored) == len(tested) == 24
    for p in scored:
        row = tested[Path(p.source).stem]
        want = np.array([float(row[f"p_{c}"]) for c in recognizer.classes])  # 6 decimals in the CSV
        np.testing.assert_allclose([p.probs[c] for c in recognizer.classes], want, atol=2e-6)
        assert p.label == row["pred"] and p.skipped is None and p.n_segments >= 1


def test_classify_command_writes_the_api_posteriors(recognizer, trained_run, corpus, tmp_path):
    out, seg_out = tmp_path / "preds.csv", tmp_path / "segments.csv"
    main(["classify", "--ckpt", str(trained_run / "checkpoints" / "best.ckpt"), "--inputs", str(_wav_dir(corpus)),
          "--out", str(out), "--segments_out", str(seg_out)])
    with open(out) as handle:
        rows = {r["path"]: r for r in csv.DictReader(handle)}
    with open(seg_out) as handle:
        seg_rows = list(csv.DictReader(handle))
    api = {p.source: p for p in recognizer.classify([_wav_dir(corpus)], segments=True)}
    assert set(rows) == set(api)
    for path, p in api.items():
        assert [float(rows[path][f"p_{c}"]) for c in recognizer.classes] == [round(p.probs[c], 6)
                                                                               for c in recognizer.classes]
        mine = [r for r in seg_rows if r["path"] == path]
        assert [int(r["offset_frames"]) for r in mine] == p.segment_offsets.tolist()
        # the file's posterior is the mean of its segments'
        np.testing.assert_allclose(p.segment_probs.mean(axis=0), [p.probs[c] for c in recognizer.classes],
                                   atol=1e-6)


def test_arrays_any_rate_and_channels_and_skips(recognizer, corpus):
    path = min(_wav_dir(corpus).rglob("*.wav"))
    samples, rate = sf.read(path, dtype="float32")
    from_file = recognizer.classify_file(path)
    from_array = recognizer.classify_array(samples, rate)
    assert from_array.probs == pytest.approx(from_file.probs, abs=1e-7)
    stereo = recognizer.classify_array(np.stack([samples, samples], axis=1), rate)  # (T, 2) -> same mono
    assert stereo.probs == pytest.approx(from_file.probs, abs=1e-7)
    assert recognizer.classify_array(torch.from_numpy(samples), rate).probs == pytest.approx(from_file.probs, abs=1e-7)
    nan = samples.copy()
    nan[10] = np.nan
    assert "NaN" in recognizer.classify_array(nan, rate).skipped
    with pytest.raises(ValueError, match=r"expected \(T,\) or \(T, C\)"):
        recognizer.classify_array(np.zeros((2, 3, 4)), rate)


def test_long_file_is_read_in_bounded_chunks(recognizer, corpus, tmp_path, monkeypatch):
    """A 12 s file with chunk_seconds=5: three chunks (5 s, 5 s, 2 s) are featurised one at a time, never
    the whole file; a file shorter than the chunk is processed exactly as in training."""
    pieces = [sf.read(p, dtype="float32")[0] for p in sorted(_wav_dir(corpus).rglob("*.wav"))[:12]]
    long = np.concatenate(pieces)[:12 * 16000]  # 12 s at 16 kHz
    path = tmp_path / "long.wav"
    sf.write(path, long, 16000)
    seen = []
    frames = recognizer.frontend.frames
    monkeypatch.setattr(recognizer.frontend, "frames", lambda wave: seen.append(len(wave)) or frames(wave))
    chunked = EmotionRecognizer(recognizer.model, recognizer.frontend, chunk_seconds=5.0)
    p = chunked.classify_file(path, segments=True)
    assert seen == [80000, 80000, 32000]
    assert p.n_segments == len(p.segment_offsets) == len(p.segment_probs)
    assert np.all(np.diff(p.segment_offsets) > 0)  # offsets count over the whole file
    seen.clear()
    whole = EmotionRecognizer(recognizer.model, recognizer.frontend, chunk_seconds=20.0).classify_file(path)
    assert seen == [192000] and whole.probs == pytest.approx(recognizer.classify_array(long, 16000).probs, abs=1e-7)


def test_damaged_and_foreign_checkpoints_are_named(tmp_path, trained_run):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.ckpt: not a readable PyTorch checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt: not a Lightning checkpoint of ser-mtl"):
        load_checkpoint(foreign)

    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "payload": Payload()}, pickled)
    with pytest.raises(CheckpointError, match="pickled.ckpt: refused to load"):
        load_checkpoint(pickled)
