"""Library scans as jobs: the index builder's runner, reporting progress to a job.

The scan's sounds become searchable first (by their audio and their file and folder names);
captions follow as their own `caption` jobs, queued when the scan is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.audio import DecodeLimits
from core.catalog import Library
from core.db import Catalog
from core.jobs import JobFailed, JobRun
from core.roots import inside_roots
from index_builder.captions import CaptionFollowUp, queue_captions
from index_builder.embed import AudioEmbedder
from index_builder.runner import index_library

# A job result stays small: the full list of failures is in the catalog's scan errors.
MAX_REPORTED_FAILURES = 50


def scan_library(
    catalog: Catalog,
    model: AudioEmbedder,
    limits: DecodeLimits,
    run: JobRun,
    *,
    batch_size: int = 16,
    captions: CaptionFollowUp | None = None,
    roots: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """The scan job: index the library named by `run.params["library_id"]`; then, with
    `captions`, queue caption jobs for its sounds that have none yet. With `roots` (the API's
    library roots), a library whose folder is no longer inside one fails the job."""
    library_id = int(run.params.get("library_id", 0))
    with catalog.session() as session:
        library = session.get(Library, library_id)
        if library is None:
            raise JobFailed(f"library {library_id} is not registered")
        root = Path(library.path)
    if roots is not None and not inside_roots(root, roots):
        raise JobFailed(f"{root} is outside the library roots (FOLEY_LIBRARY_ROOTS)")
    if not root.is_dir():
        raise JobFailed(f"{root} is no longer a folder")
    run.progress(0.0, "looking for audio files")

    def report(done: int, total: int) -> None:
        run.progress(done / total if total else 1.0, f"{done} of {total} files indexed")

    summary = index_library(catalog, model, root, limits, batch_size=batch_size, progress=report)
    counts = summary.counts
    caption_jobs = (
        queue_captions(catalog, library_id, captions)
        if captions
        else {"skipped": "FOLEY_CAPTION_ON_SCAN is off"}
    )
    return {
        "library_id": library_id,
        "files": summary.files,
        "unchanged": summary.unchanged,
        "added": counts.added,
        "embedded": counts.embedded,
        "vanished": summary.vanished,
        "removed": counts.removed_sounds,
        "skipped_non_audio": summary.skipped_non_audio,
        "failed": len(summary.failures),
        "failures": [
            {"path": path, "error": message}
            for path, message in summary.failures[:MAX_REPORTED_FAILURES]
        ],
        "seconds": round(summary.seconds, 3),
        "captions": caption_jobs,
    }
