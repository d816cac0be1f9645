"""`foley index|reindex|doctor|search`: the library, its catalog and its index."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import Settings
from foley.common import CommandError, progress_bar


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    if args.jobs or args.no_wait:
        return _index_as_jobs(args, settings)
    from core.audio import DecodeLimits
    from core.db import Catalog
    from generative.registry import get_clap
    from index_builder.runner import index_library

    roots = [Path(p).expanduser() for p in args.paths]
    for root in roots:
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
    settings.ensure_dirs()
    catalog = Catalog(settings.catalog_url)
    clap = get_clap(settings)
    failed = 0
    for root in roots:
        progress = progress_bar(0, f"indexing {root.name or root}")
        summary = index_library(
            catalog,
            clap,
            root,
            DecodeLimits.from_settings(settings),
            batch_size=args.batch_size,
            progress=progress,
        )
        progress(0, 0)
        c = summary.counts
        print(
            f"{root}: {summary.files} audio files ({summary.unchanged} unchanged), "
            f"{c.added} new sounds, {c.embedded} embedded, {summary.vanished} vanished, "
            f"{c.removed_sounds} sounds removed, {summary.skipped_non_audio} non-audio skipped, "
            f"{len(summary.failures)} failed, {summary.seconds:.1f} s"
        )
        for path, message in summary.failures:
            print(f"  failed: {path}: {message}")
        failed += len(summary.failures)
    _sync_if_possible(settings, catalog, clap)
    if settings.caption_on_scan:
        _queue_captions(settings, catalog, roots)
    catalog.dispose()
    return 1 if failed and args.strict else 0


def _index_as_jobs(args: argparse.Namespace, settings: Settings) -> int:
    """Queue a scan job per folder; a worker splits it into batch jobs for every worker.
    Then wait, showing progress, and apply the workers' changes to the index."""
    from core.db import Catalog
    from core.jobs import JobKind, new_job
    from core.queue import JobQueue, QueueUnavailableError
    from index_builder.runner import register_library

    roots = [Path(p).expanduser().resolve() for p in args.paths]
    for root in roots:
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
    settings.ensure_dirs()
    catalog = Catalog(settings.catalog_url)
    queue = JobQueue(settings)
    try:
        scans: list[tuple[Path, str]] = []
        for root in roots:
            with catalog.session() as session:
                params = {
                    "library_id": register_library(catalog, root),
                    "batch_files": args.batch_files or settings.scan_batch_files or 256,
                    "batch_size": args.batch_size,
                    "from_command_line": True,
                }
                job_id = new_job(session, JobKind.scan.value, params).id
            try:
                queue.send(job_id, JobKind.scan.value)
            except QueueUnavailableError as exc:
                raise CommandError(str(exc)) from exc
            scans.append((root, job_id))
        if args.no_wait:
            for root, job_id in scans:
                print(f"{root}: scan job {job_id} (GET /api/jobs/{job_id} follows it)")
            return 0
        failed = 0
        for root, job_id in scans:
            failed += _wait_for_scan(catalog, root, job_id)
        clap = _clap_for_sync(settings)
        _sync_if_possible(settings, catalog, clap)
        return 1 if failed and args.strict else 0
    finally:
        queue.close()
        catalog.dispose()


# A scan still queued after this long is waiting for a worker: say how to start one.
NO_WORKER_HINT_S = 10.0


def _wait_for_scan(catalog: object, root: Path, job_id: str) -> int:
    """Show the scan's progress until it finishes; print its summary; return its failures."""
    import time

    from tqdm import tqdm

    from core.catalog import Job
    from core.db import Catalog
    from core.jobs import FINISHED

    assert isinstance(catalog, Catalog)
    bar = tqdm(desc=f"indexing {root.name or root}", unit="file", dynamic_ncols=True)
    started, hinted = time.monotonic(), False
    while True:
        with catalog.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            status, progress, params = job.status, job.progress, dict(job.params)
            result, error, message = job.result, job.error, job.message
        fanned = params.get("fan_out")
        if fanned:
            bar.total = fanned["todo"]
            bar.set_postfix_str(message.split(" (")[0])
            bar.update(round(progress * fanned["todo"]) - bar.n)
        elif message:
            bar.set_postfix_str(message)  # a scan small enough to run as one job
        if status in FINISHED:
            break
        if status == "queued" and not hinted and time.monotonic() - started > NO_WORKER_HINT_S:
            bar.write("waiting for a worker: start `foley worker` (or `foley serve`)")
            hinted = True
        time.sleep(0.5)
    bar.close()
    if status != "succeeded" or result is None:
        print(f"{root}: scan {status}: {error or message}")
        return 1
    print(
        f"{root}: {result['files']} audio files ({result['unchanged']} unchanged), "
        f"{result['added']} new sounds, {result['embedded']} embedded, "
        f"{result['vanished']} vanished, {result['removed']} sounds removed, "
        f"{result['skipped_non_audio']} non-audio skipped, {result['failed']} failed, "
        f"{result.get('batches', 1)} batch jobs, {result['seconds']:.1f} s"
    )
    for failure in result["failures"]:
        print(f"  failed: {failure['path']}: {failure['error']}")
    return int(result["failed"])


def _clap_for_sync(settings: Settings) -> object:
    from generative.registry import get_clap

    return get_clap(settings)


def _sync_if_possible(settings: Settings, catalog: object, clap: object) -> None:
    from core.db import Catalog
    from core.vector_index import IndexLockedError, open_vector_index
    from index_builder.syncer import IndexSyncer

    assert isinstance(catalog, Catalog)
    try:
        index = open_vector_index(settings, clap.dim)  # type: ignore[attr-defined]
    except IndexLockedError:
        print("the index is open in a running `foley serve`; it applies these changes itself")
        return
    try:
        applied = IndexSyncer(catalog, index, clap.model_id).sync()  # type: ignore[attr-defined]
        index.optimize()
        print(f"index: {applied} changes applied, {index.count()} sounds searchable")
    finally:
        index.close()


def _queue_captions(settings: Settings, catalog: object, roots: list[Path]) -> None:
    """Caption jobs for the indexed sounds that have no caption yet, as a scan job queues
    them; a worker (`foley serve` or `foley worker`) runs them."""
    from core.db import Catalog
    from core.queue import JobQueue, QueueUnavailableError
    from index_builder.captions import CaptionFollowUp, captioner_for, queue_captions
    from index_builder.runner import register_library

    assert isinstance(catalog, Catalog)
    captioner, why = captioner_for(settings)
    if captioner is None:
        print(f"captions: none queued ({why})")
        return
    queue = JobQueue(settings)
    try:
        follow = CaptionFollowUp(queue.send, settings.caption_batch_size)
        for root in roots:
            queued = queue_captions(catalog, register_library(catalog, root), follow)
            print(
                f"captions: {len(queued['jobs'])} caption jobs queued for {queued['sounds']} "
                "sounds; `foley serve` or `foley worker` runs them"
            )
    except QueueUnavailableError as exc:
        print(f"captions: none queued ({exc})")
    finally:
        queue.close()


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from search.service import Foley

    foley = Foley.open(settings)
    try:
        count = foley.syncer.rebuild(progress=progress_bar(0, "reindexing", "sound"))
        print(f"index rebuilt from the catalog: {count} sounds")
    finally:
        foley.close()
    return 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from search.service import Foley

    foley = Foley.open(settings)
    try:
        diff = foley.syncer.diff()
        print(f"model: {foley.clap.model_id}; index points: {foley.index.count()}")
        print(f"pending outbox entries: {diff.pending}")
        if diff.model_mismatch:
            print(f"model mismatch: {diff.model_mismatch}")
        for label, ids in (
            ("missing from index", diff.missing),
            ("not in catalog", diff.extra),
            ("stale vectors", diff.stale),
        ):
            shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
            print(f"{label}: {len(ids)}" + (f" ({shown})" if ids else ""))
        if diff.clean and not diff.pending:
            print("catalog and index agree")
            return 0
        if args.repair:
            foley.syncer.repair(diff)
            after = foley.syncer.diff()
            print("repaired" if after.clean and not after.pending else "repair incomplete")
            return 0 if after.clean else 1
        print("run `foley doctor --repair` to fix")
        return 1
    finally:
        foley.close()


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from core.vector_index import IndexLockedError, SearchFilter
    from search.pipeline import find_text
    from search.service import Foley

    flt = SearchFilter(args.min_duration, args.max_duration, args.source, tuple(args.tag or ()))
    try:
        foley = Foley.open(settings)
    except IndexLockedError:
        return _search_remote(args, settings)
    try:
        foley.sync()
        results = find_text(foley, args.query, args.k, flt, mode=args.mode).results
    finally:
        foley.close()
    _print_results([(r.id, r.score, r.duration, r.title, r.tags) for r in results])
    return 0


def _search_remote(args: argparse.Namespace, settings: Settings) -> int:
    """The index is held by a running server: ask it instead."""
    import json
    import urllib.parse
    import urllib.request

    query: list[tuple[str, object]] = [("q", args.query), ("k", args.k), ("mode", args.mode)]
    for name in ("min_duration", "max_duration", "source"):
        if getattr(args, name) is not None:
            query.append((name, getattr(args, name)))
    query.extend(("tag", tag) for tag in args.tag or ())
    url = (
        f"http://{settings.api_host}:{settings.api_port}/api/search?{urllib.parse.urlencode(query)}"
    )
    with urllib.request.urlopen(url, timeout=60) as response:
        body = json.load(response)
    _print_results(
        [(r["id"], r["score"], r["duration"], r["title"], r["tags"]) for r in body["data"]]
    )
    return 0


def _print_results(rows: Sequence[tuple[int, float, float, str, list[str]]]) -> None:
    if not rows:
        print("no results")
        return
    print(f"{'#':>3}  {'id':>6}  {'score':>6}  {'dur s':>6}  title  [tags]")
    for rank, (sound_id, score, duration, title, tags) in enumerate(rows, 1):
        print(
            f"{rank:>3}  {sound_id:>6}  {score:6.3f}  {duration:6.2f}  {title}  [{', '.join(tags)}]"
        )


def add_library_commands(sub: Any) -> None:
    p = sub.add_parser("index", help="index (or re-index) library folders")
    p.add_argument("paths", nargs="+", help="folders of sound files")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--strict", action="store_true", help="exit 1 if any file failed")
    p.add_argument(
        "--jobs",
        action="store_true",
        help="index on the job workers (`foley worker`, on this or other machines), in "
        "batches of --batch-files files, and wait for them",
    )
    p.add_argument(
        "--batch-files",
        type=int,
        help="files per batch job with --jobs (default FOLEY_SCAN_BATCH_FILES)",
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="with --jobs: print the scan jobs' ids and return at once",
    )
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("reindex", help="rebuild the vector index from the catalog")
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("doctor", help="compare catalog and index")
    p.add_argument("--repair", action="store_true", help="fix the differences found")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("search", help="search by description")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--min-duration", type=float)
    p.add_argument("--max-duration", type=float)
    p.add_argument("--source", choices=["library", "upload", "generated"])
    p.add_argument("--tag", action="append")
    p.add_argument(
        "--mode",
        choices=["hybrid", "audio", "words"],
        default="hybrid",
        help="hybrid (default): sounds and words fused; audio: CLAP only; words: text only",
    )
    p.set_defaults(func=cmd_search)
