"""Build a corpus manifest once and reuse it while the corpus's label files are unchanged: reading
LibriSpeech's train-clean-360 headers takes minutes, and every DDP rank, SLURM task and ``ser-mtl`` call
needs it. The key includes the label files' path, size and mtime, so an edited corpus is re-read."""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path

from ser_mtl.data.corpora import build_manifest, reader
from ser_mtl.data.manifest import CorpusError, ManifestRow, read_manifest, write_manifest


def _signature(corpus: str, root: Path, subset: str | None) -> str:
    # v2: readers keep every emotion label (class sets belong to the label scheme): older caches are re-read
    # v3: manifests gained the age column (CREMA-D's actor ages): older caches are re-read
    digest = hashlib.sha1(f"v3|{corpus}|{root}|{subset}".encode())
    for pattern in reader(corpus).label_globs:  # files whose change means the manifest must be read again
        for path in sorted(glob.glob(str(root / pattern.format(subset=subset or "")))):
            st = os.stat(path)
            digest.update(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached_manifest(corpus: str, root: str, cache_dir: str, subset: str | None = None,
                    verbose: bool = True) -> list[ManifestRow]:
    """Rows of ``corpus`` at ``root``, from ``cache_dir/manifests`` or freshly read (and cached, printing
    the skipped files)."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise CorpusError(f"{root}: corpus root does not exist or is not a directory ({corpus})")
    out = Path(cache_dir) / "manifests" / f"{corpus}-{subset or 'all'}-{_signature(corpus, root_path, subset)}.csv"
    if out.exists():
        try:
            return read_manifest(out)
        except (CorpusError, OSError, UnicodeDecodeError) as err:  # a cache: rebuild it rather than stop
            print(f"[ser-mtl] cached manifest {out} is damaged ({err}); rebuilding it from {root}")
    result = build_manifest(corpus, str(root_path), subset)
    if verbose and result.skipped:
        print(f"[ser-mtl] {corpus}: skipped {len(result.skipped)} file(s):")
        for skip in result.skipped:
            print(f"  {skip}")
    if not result.rows:
        raise CorpusError(f"{root}: no usable utterances found for corpus {corpus!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(result.rows, out)
    return result.rows
