"""Library scans as jobs: the index builder's runner, reporting progress to a job.

The scan's sounds become searchable first (by their audio and their file and folder names);
captions follow as their own `caption` jobs, queued when the scan is done. A scan with more
than `batch_files` files to index fans them out as batch jobs over the workers
(`index_builder.scan_batches`).
"""

from __future__ import annotations

import time
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
from index_builder.runner import close_scan, forget_vanished, index_files, plan_scan
from index_builder.scan_batches import Enqueue, fan_out, resume_fanned_out

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
    batch_files: int = 0,
    enqueue: Enqueue | None = None,
) -> dict[str, Any]:
    """The scan job: index the library named by `run.params["library_id"]`; then, with
    `captions`, queue caption jobs for its sounds that have none yet. With `roots` (the API's
    library roots), a library whose folder is no longer inside one fails the job, unless the
    command line queued the scan (`from_command_line`), which may index any folder.

    With `enqueue`, more than `batch_files` (or `run.params["batch_files"]`) files to index
    are fanned out as batch jobs, and the last of them finishes this one."""
    if "fan_out" in run.params:
        return resume_fanned_out(catalog, run, enqueue, captions)
    if run.params.get("from_command_line"):
        roots = None
    batch_files = int(run.params.get("batch_files", batch_files))
    batch_size = int(run.params.get("batch_size", batch_size))
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

    started = time.monotonic()
    plan = plan_scan(catalog, model.model_id, root)
    if enqueue is not None and 0 < batch_files < len(plan.todo):
        fan_out(catalog, run, plan, enqueue, batch_files=batch_files, batch_size=batch_size)
    summary = plan.summary
    counts = summary.counts
    counts.add(
        index_files(
            catalog, model, plan.root, plan.library_id, plan.todo, limits, batch_size, report
        )
    )
    summary.vanished = forget_vanished(catalog, plan.library_id, plan.seen, summary)
    with catalog.session() as session:
        summary.failures = close_scan(session, plan.library_id)
    summary.seconds = time.monotonic() - started
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
