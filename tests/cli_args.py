"""Command-line arguments shared by the tests that train through the real CLI."""

from pathlib import Path


def run_args(corpus: Path, run: Path) -> list[str]:
    """A small demo-config run on the session corpus (64-frame segments), logging off."""
    return ["--config", "configs/demo.yaml",
            "--data.root", str(corpus / "IEMOCAP_full_release"), "--data.aux_root", str(corpus / "LibriSpeech"),
            "--data.cache_dir", str(run.parent / "cache"), "--data.segment_frames", "64",
            "--data.segment_hop", "32", "--model.encoder_pools", "[[2, 2], [2, 2], [2, 2]]",
            "--trainer.default_root_dir", str(run), "--trainer.logger", "false", "--data.verification_enrol", "3"]
