"""``ser-mtl classify``: a trained model on new audio files, written as CSV or JSON (`ser_mtl.inference`)."""

from __future__ import annotations

import csv
import io
import json

from ser_mtl.command_line import command
from ser_mtl.io_utils import atomic_write_text


@command(errors=(FileNotFoundError, ValueError))
def classify(inputs: list[str], ckpt: str, out: str = "predictions.csv", device: str = "cpu",
             batch_size: int = 64, segments_out: str | None = None, chunk_seconds: float = 600.0,
             features_model: str | None = None) -> None:
    """Emotion probabilities for audio files with a trained model, preprocessed exactly as in training.

    Args:
        inputs: audio files and/or folders (searched recursively for .wav/.flac/.ogg/...).
        ckpt: a ``ser-mtl fit`` checkpoint (it carries the features, normalisation and class names).
        out: output file; ``.json`` writes JSON, anything else CSV (``path,pred,p_<class>...``, then one column
            per value task of the model, e.g. ``valence``, on the training corpus's scale).
        device: torch device for features and the network (``cpu``, ``cuda``, ``cuda:1``).
        batch_size: segments per forward pass.
        segments_out: also write one CSV row per segment here (``path,offset_frames,p_<class>...``).
        chunk_seconds: recordings longer than this are read and scored in chunks (bounded memory).
        features_model: a pretrained front-end's model folder on this machine, when it is not where the
            checkpoint says (its weights must be the ones the model was trained on: their hash is checked).
    """
    from ser_mtl.inference import EmotionRecognizer

    recognizer = EmotionRecognizer.from_checkpoint(ckpt, device, features_model, batch_size=batch_size,
                                                   chunk_seconds=chunk_seconds)
    classes = recognizer.classes if "emotion" in recognizer.model.heads else []
    values = recognizer.value_tasks
    predictions = recognizer.classify(inputs, segments=segments_out is not None)
    done = [p for p in predictions if p.skipped is None]
    for p in predictions:
        if p.skipped is not None:
            print(f"skipped {p.skipped}")
    rows = [{"path": p.source, **({"pred": p.label} if classes else {}),
             **{f"p_{c}": round(p.probs[c], 6) for c in classes}, **{t: round(p.values[t], 6) for t in values}}
            for p in done]
    columns = ["path"] + (["pred"] if classes else []) + [f"p_{c}" for c in classes] + values
    text = json.dumps(rows, indent=2) + "\n" if out.endswith(".json") else _csv(columns, rows)
    atomic_write_text(out, text)
    if segments_out is not None:
        seg_rows = [{"path": p.source, "offset_frames": int(o), **{f"p_{c}": round(float(v), 6)
                                                                    for c, v in zip(classes, probs)}}
                    for p in done for o, probs in zip(p.segment_offsets, p.segment_probs)]
        atomic_write_text(segments_out, _csv(["path", "offset_frames"] + [f"p_{c}" for c in classes], seg_rows))
    print(f"classified {len(done)} file(s), skipped {len(predictions) - len(done)} -> {out}")


def _csv(fieldnames: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
