"""What `SERDataModule.describe` prints at start: sizes per split, the speaker draws, unused or skipped data."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ser_mtl.data.store import FeatureStore
from ser_mtl.tasks import TASKS

if TYPE_CHECKING:
    from ser_mtl.data.datamodule import SERDataModule


def skip_summary(stores: dict[str, FeatureStore]) -> list[str]:
    """One line per store with utterances that have no features: how many, and how many for each reason."""
    lines = []
    for name, store in stores.items():
        if store.skipped:
            reasons = Counter(skip.reason.split(" (")[0].split(": ")[0] for skip in store.skipped)
            counted = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common())
            lines.append(f"{name} corpus: {len(store.skipped)} of {len(store)} utterances skipped, no features "
                         f"({counted}); see {store.path / 'COMPLETE.json'}")
    return lines


def describe(dm: SERDataModule) -> str:
    """Utterances and speakers per split, the speaker label space, the draws and whether aux data is used."""
    eval_rows, _ = dm.evaluation_split()
    spk = lambda rows, idx: len({rows[i].speaker for i in idx})
    train = dm.train_indices()
    lines = [
        (f"data: {dm.hparams.corpus} {dm.hparams.scheme} fold {dm.hparams.fold}/{dm.num_folds} "
         f"task {dm.hparams.task} classes {dm.class_names}"),
        (f"  train {len(train)} utts / {spk(dm.rows, train)} speakers; aux {len(dm.aux_rows)} utts / "
         f"{len({r.speaker for r in dm.aux_rows})} speakers; speaker label space {dm.num_speakers}"),
        (f"  val {len(dm.split.val)} utts / {spk(eval_rows, dm.split.val)} speakers; "
         f"test {len(dm.split.test)} utts / {spk(eval_rows, dm.split.test)} speakers"),
    ]
    features, width = dm.features, dm.hparams.segment_frames
    lines.append(f"  features: {features.describe()}; segments of {width} frames = "
                 f"{width / features.frames_per_second:.2f} s"
                 + (f"; class_map {dm.label_scheme.class_map}" if dm.label_scheme.class_map else ""))
    for task in dm.value_tasks:  # how many training utterances carry the value, on which scale
        column = TASKS[task].column
        known = [dm.rows[i] for i in train if getattr(dm.rows[i], column) is not None]
        scales = sorted({dm.value_scale(task, r) for r in known})
        lines.append(f"  {task}: {len(known)} of {len(train)} training utts have a value"
                     + (f", scale {', '.join(f'[{lo:g}, {hi:g}]' for lo, hi in scales)} -> [0, 1]" if scales else ""))
    if dm.hparams.speakers is not None:
        lines.append(f"  primary: {dm.primary_draw.describe()}")
    if dm.aux_draw is not None:
        lines.append(f"  aux: {dm.aux_draw.describe()}")
    if dm.aux_unused:
        lines.append(f"  auxiliary corpus {dm.hparams.aux_root} not used: the model has no gender or speaker "
                     f"task (tasks {list(dm.hparams.model_tasks)})")
    return "\n".join(lines)
