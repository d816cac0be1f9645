"""Library scans fanned out over workers, a batch of files per job.

A scan with more files to index than its `batch_files` does not index them itself: it walks
the folder, forgets files that vanished, writes one `index_batch` job per `batch_files`
files, records their ids on its own row, sends them to the queue and hands off
(`JobDelegated`): its row stays running. Each batch job indexes its files as the runner
does (hash, dedup, decode, embed, catalog rows and outbox entries, a transaction per
`batch_size` files), then reports to its scan; the last batch to finish finishes the scan:
its result sums the batches', the library is stamped as scanned, caption jobs are queued.
The index syncer (`foley serve`, or `foley index` itself) applies the outbox as always.

Nothing is written twice. A batch run again (its worker died, or its message came twice)
skips the files an earlier attempt already wrote, and the writer dedups by content hash and
path; two batches adding the same bytes at once both end up linked to one sound. A scan run
again (a worker restarted after its lease ran out) sends its unfinished batches again and
hands off again, or finishes if they all are done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.audio import DecodeLimits
from core.catalog import Job, JobStatus, Library, utcnow
from core.db import Catalog
from core.jobs import FINISHED, JobDelegated, JobFailed, JobKind, JobRun, new_job
from index_builder.captions import CaptionFollowUp, queue_captions
from index_builder.embed import AudioEmbedder
from index_builder.runner import ScanPlan, close_scan, files_to_index, forget_vanished, index_files
from index_builder.writer import WriteCounts

log = logging.getLogger(__name__)

Enqueue = Callable[[str, str], None]
# A scan's result lists at most this many failed files: the rest are in the catalog.
MAX_REPORTED_FAILURES = 50
COUNTS = ("added", "embedded", "failed", "removed")


def fan_out(
    catalog: Catalog,
    run: JobRun,
    plan: ScanPlan,
    enqueue: Enqueue,
    *,
    batch_files: int,
    batch_size: int,
) -> NoReturn:
    """Split the scan's files into `index_batch` jobs, send them, and hand the scan off."""
    started = time.time()
    summary = plan.summary
    vanished = forget_vanished(catalog, plan.library_id, plan.seen, summary)
    paths = [str(f.path) for f in plan.todo]
    chunks = [paths[i : i + batch_files] for i in range(0, len(paths), batch_files)]
    with catalog.session() as session:
        batches = [
            new_job(
                session,
                JobKind.index_batch.value,
                {
                    "scan_id": run.id,
                    "library_id": plan.library_id,
                    "paths": chunk,
                    "batch_size": batch_size,
                },
            ).id
            for chunk in chunks
        ]
        fanned = {
            "batches": batches,
            "batch_files": batch_files,
            "todo": len(paths),
            "files": summary.files,
            "unchanged": summary.unchanged,
            "skipped_non_audio": summary.skipped_non_audio,
            "vanished": vanished,
            "removed": summary.counts.removed_sounds,
            "started": started,
        }
        run.hand_off_in(
            session,
            {**run.params, "fan_out": fanned},
            f"0 of {len(batches)} batches done (0 of {len(paths)} files)",
        )
    for batch_id in batches:
        enqueue(batch_id, JobKind.index_batch.value)
    log.info("scan %s: %d files in %d batch jobs", run.id, len(paths), len(batches))
    raise JobDelegated(f"{len(batches)} batch jobs")


def resume_fanned_out(
    catalog: Catalog, run: JobRun, enqueue: Enqueue | None, captions: CaptionFollowUp | None
) -> dict[str, Any]:
    """A fanned-out scan run again: finish it if its batches are done, else send the batches
    still queued again (their messages may be lost) and hand off again."""
    if finish_scan(catalog, run.id, captions):
        run.finished = True
        with catalog.session() as session:
            result = session.scalar(select(Job.result).where(Job.id == run.id))
        return dict(result or {})
    batches = run.params["fan_out"]["batches"]
    with catalog.session() as session:
        queued = session.scalars(
            select(Job.id).where(Job.id.in_(batches), Job.status == JobStatus.queued.value)
        ).all()
    if enqueue is not None:
        for batch_id in queued:
            enqueue(batch_id, JobKind.index_batch.value)
    raise JobDelegated(f"{len(queued)} batch jobs sent again")


def index_batch(
    catalog: Catalog,
    model: AudioEmbedder,
    limits: DecodeLimits,
    run: JobRun,
    *,
    captions: CaptionFollowUp | None = None,
) -> dict[str, Any]:
    """The batch job: index `run.params["paths"]` of library `library_id`, then report to
    its scan (finishing it when this was the last batch)."""
    params = run.params
    scan_id = params.get("scan_id")
    paths: list[str] = list(params.get("paths", []))
    if scan_id and _status(catalog, scan_id) == JobStatus.cancelled.value:
        return {"files": len(paths), "skipped": "its scan was cancelled"}
    library_id = int(params.get("library_id", 0))
    with catalog.session() as session:
        library = session.get(Library, library_id)
        if library is None:
            raise JobFailed(f"library {library_id} is not registered")
        root = Path(library.path)
    files, gone = files_to_index(catalog, model.model_id, paths)

    def report(done: int, total: int) -> None:
        run.progress(done / total if total else 1.0, f"{done} of {total} files indexed")

    counts = index_files(
        catalog,
        model,
        root,
        library_id,
        files,
        limits,
        batch_size=int(params.get("batch_size", 16)),
        progress=report,
    )
    result = {
        "files": len(paths),
        "indexed": len(files),
        "unchanged": len(paths) - len(files) - gone,
        "gone": gone,
        **_counts(counts),
    }
    run.succeed(result)  # committed before the siblings are counted, so the last one sees all
    if scan_id:
        finish_scan(catalog, scan_id, captions)
    return result


def finish_scan(catalog: Catalog, scan_id: str, captions: CaptionFollowUp | None) -> bool:
    """Report the scan's progress; when every batch has finished, finish the scan (once,
    whoever calls). True when this call finished it."""
    with catalog.session() as session:
        scan = session.get(Job, scan_id)
        if scan is None or scan.status != JobStatus.running.value:
            return False
        fanned = scan.params["fan_out"]
        batches: list[str] = fanned["batches"]
        finished = set(
            session.scalars(select(Job.id).where(Job.id.in_(batches), Job.status.in_(FINISHED)))
        )
        if len(finished) < len(batches):
            _report_progress(session, scan_id, fanned, finished)
            return False
        result = _scan_result(session, scan, batches)
        failed: list[str] = result.pop("batch_errors")
        done = session.execute(
            update(Job)
            .where(Job.id == scan_id, Job.status == JobStatus.running.value)
            .values(
                status=JobStatus.failed.value if failed else JobStatus.succeeded.value,
                progress=1.0,
                message=f"{len(batches)} batches done",
                result=result,
                error=f"{len(failed)} of {len(batches)} batch jobs failed: {failed[0]}"
                if failed
                else None,
                finished_at=utcnow(),
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            return False  # another batch (or the scan run again) finished it
    log.info("scan %s finished: %d batches", scan_id, len(batches))
    if captions is not None and not failed:
        queued = queue_captions(catalog, int(scan.params["library_id"]), captions)
        with catalog.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == scan_id)
                .values(result={**result, "captions": queued})
                .execution_options(synchronize_session=False)
            )
    return True


def _report_progress(
    session: Session, scan_id: str, fanned: dict[str, Any], finished: set[str]
) -> None:
    batches: list[str] = fanned["batches"]
    size, todo = int(fanned["batch_files"]), int(fanned["todo"])
    files = sum(min(size, todo - i * size) for i, b in enumerate(batches) if b in finished)
    fraction = files / todo if todo else 1.0
    # Batches report in any order: progress only moves forward. The update also keeps the
    # scan's lease fresh while its batches run.
    session.execute(
        update(Job)
        .where(Job.id == scan_id, Job.status == JobStatus.running.value, Job.progress <= fraction)
        .values(
            progress=fraction,
            message=f"{len(finished)} of {len(batches)} batches done ({files} of {todo} files)",
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


def _scan_result(session: Session, scan: Job, batches: Sequence[str]) -> dict[str, Any]:
    fanned = scan.params["fan_out"]
    totals = dict.fromkeys(COUNTS, 0)
    errors: list[str] = []
    for status, result, error in session.execute(
        select(Job.status, Job.result, Job.error).where(Job.id.in_(batches))
    ):
        if status == JobStatus.failed.value:
            errors.append(error or "failed")
        for name in COUNTS:
            totals[name] += int((result or {}).get(name, 0))
    library_id = int(scan.params["library_id"])
    failures = close_scan(session, library_id)
    return {
        "library_id": library_id,
        "files": fanned["files"],
        "unchanged": fanned["unchanged"],
        "added": totals["added"],
        "embedded": totals["embedded"],
        "vanished": fanned["vanished"],
        "removed": fanned["removed"] + totals["removed"],
        "skipped_non_audio": fanned["skipped_non_audio"],
        "failed": len(failures),
        "failures": [{"path": p, "error": m} for p, m in failures[:MAX_REPORTED_FAILURES]],
        "seconds": round(time.time() - float(fanned["started"]), 3),
        "batches": len(batches),
        "batch_errors": errors,
    }


def _counts(counts: WriteCounts) -> dict[str, int]:
    return {
        "added": counts.added,
        "embedded": counts.embedded,
        "failed": counts.failed,
        "removed": counts.removed_sounds,
    }


def _status(catalog: Catalog, job_id: str) -> str | None:
    with catalog.session() as session:
        return session.scalar(select(Job.status).where(Job.id == job_id))
