"""Job records: guarded transitions, leases, cancellation and recovery, on both catalogs."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from core.catalog import Job, utcnow
from core.db import Catalog
from core.jobs import (
    JobBusy,
    JobCancelled,
    JobFailed,
    JobFinishedError,
    JobRun,
    JobSuperseded,
    cancel_job,
    claim,
    execute,
    list_jobs,
    new_job,
    requeue_orphans,
)


def make_job(catalog: Catalog, kind: str = "ping", **params: object) -> str:
    with catalog.session() as session:
        return new_job(session, kind, dict(params)).id


def row(catalog: Catalog, job_id: str) -> Job:
    with catalog.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_a_job_runs_once_however_often_it_is_delivered(catalog: Catalog) -> None:
    job_id = make_job(catalog, seconds=0)
    first = claim(catalog, job_id, lease_s=30)
    assert isinstance(first, JobRun) and first.attempt == 1
    with pytest.raises(JobBusy) as busy:  # a second delivery while the first is alive
        claim(catalog, job_id, lease_s=30)
    assert 0 < busy.value.wait_s <= 30
    first.progress(0.5, "half")
    assert (row(catalog, job_id).progress, row(catalog, job_id).message) == (0.5, "half")
    first.succeed({"pong": True})
    assert claim(catalog, job_id, lease_s=30) is None  # finished: nothing to do
    job = row(catalog, job_id)
    assert (job.status, job.attempts, job.result) == ("succeeded", 1, {"pong": True})
    assert job.finished_at is not None and job.progress == 1.0


def test_an_expired_lease_hands_the_job_to_a_new_attempt(catalog: Catalog) -> None:
    job_id = make_job(catalog)
    dead = claim(catalog, job_id, lease_s=30)
    assert dead is not None
    time.sleep(0.2)
    second = claim(catalog, job_id, lease_s=0.1)  # the first stopped heartbeating
    assert second is not None and second.attempt == 2
    with pytest.raises(JobSuperseded):
        dead.progress(0.9)
    with pytest.raises(JobSuperseded):
        dead.succeed({"from": "the dead attempt"})
    assert not dead.heartbeat()
    second.succeed({"from": "the live attempt"})
    job = row(catalog, job_id)
    assert job.result == {"from": "the live attempt"} and job.attempts == 2


def test_cancel_stops_a_running_attempt_and_refuses_finished_jobs(catalog: Catalog) -> None:
    job_id = make_job(catalog)
    run = claim(catalog, job_id, lease_s=30)
    assert run is not None
    with catalog.session() as session:
        assert cancel_job(session, job_id).status == "cancelled"
    with pytest.raises(JobCancelled):
        run.progress(0.3)
    assert not run.fail("too late")
    assert row(catalog, job_id).status == "cancelled"
    with catalog.session() as session, pytest.raises(JobFinishedError, match="already cancelled"):
        cancel_job(session, job_id)
    with catalog.session() as session, pytest.raises(LookupError):
        cancel_job(session, "no-such-job")
    assert claim(catalog, job_id, lease_s=30) is None


def test_execute_records_success_failure_and_internal_errors(catalog: Catalog) -> None:
    ok, bad, broken = make_job(catalog), make_job(catalog), make_job(catalog)
    assert execute(catalog, ok, lambda run: {"n": 1}, lease_s=5).status == "succeeded"

    def refuse(run: JobRun) -> dict[str, object]:
        raise JobFailed("clip.wav is not audio")

    def crash(run: JobRun) -> dict[str, object]:
        raise KeyError("oops")

    assert execute(catalog, bad, refuse, lease_s=5).status == "failed"
    assert execute(catalog, broken, crash, lease_s=5).status == "failed"
    assert row(catalog, ok).result == {"n": 1}
    assert row(catalog, bad).error == "clip.wav is not audio"
    assert "KeyError" in (row(catalog, broken).error or "")
    assert execute(catalog, ok, lambda run: {"n": 2}, lease_s=5).status == "skipped"
    assert row(catalog, ok).result == {"n": 1}


def test_heartbeats_keep_the_lease_while_the_body_runs(catalog: Catalog) -> None:
    job_id = make_job(catalog)
    seen: list[bool] = []

    def slow(run: JobRun) -> dict[str, object]:
        time.sleep(0.6)
        try:  # a second worker finds the lease fresh although no progress was reported
            claim(catalog, job_id, lease_s=0.4)
            seen.append(False)
        except JobBusy:
            seen.append(True)
        return {}

    assert execute(catalog, job_id, slow, lease_s=0.4).status == "succeeded"
    assert seen == [True]


def test_orphans_are_requeued_once(catalog: Catalog) -> None:
    running, queued, other_kind = make_job(catalog), make_job(catalog), make_job(catalog, "scan")
    assert claim(catalog, running, lease_s=30) is not None
    assert claim(catalog, other_kind, lease_s=30) is not None
    assert (
        requeue_orphans(catalog, ["ping"], utcnow() - timedelta(hours=1), include_queued=False)
        == []
    )
    later = utcnow() + timedelta(seconds=1)
    found = requeue_orphans(catalog, ["ping"], later, include_queued=True)
    assert sorted(found) == sorted([(running, "ping"), (queued, "ping")])
    assert row(catalog, running).status == "queued" and row(catalog, other_kind).status == "running"
    assert requeue_orphans(catalog, ["ping"], later, include_queued=False) == []
    again = claim(catalog, running, lease_s=30)
    assert again is not None and again.attempt == 2


def test_queued_jobs_left_idle_are_sent_again_once_per_period(catalog: Catalog) -> None:
    idle, fresh = make_job(catalog), make_job(catalog)
    past = utcnow() - timedelta(hours=1)
    with catalog.session() as session:
        job = session.get(Job, idle)
        assert job is not None
        job.updated_at = past  # its message was lost an hour ago
    cutoff = utcnow() - timedelta(minutes=10)
    found = requeue_orphans(catalog, ["ping"], past, include_queued=False, queued_before=cutoff)
    assert found == [(idle, "ping")]
    assert row(catalog, idle).status == "queued"
    # Touched when sent: the next sweep within the period leaves it (and the fresh one) alone.
    assert (
        requeue_orphans(catalog, ["ping"], past, include_queued=False, queued_before=cutoff) == []
    )
    assert row(catalog, fresh).status == "queued"


def test_list_jobs_filters_and_counts(catalog: Catalog) -> None:
    for _ in range(3):
        make_job(catalog, "upload")
    done = make_job(catalog, "scan")
    execute(catalog, done, lambda run: {}, lease_s=5)
    with catalog.session() as session:
        uploads, count = list_jobs(session, kind="upload", limit=2)
        assert count == 3 and len(uploads) == 2 and {j.kind for j in uploads} == {"upload"}
        finished, count = list_jobs(session, status="succeeded")
        assert count == 1 and finished[0].id == done
        assert list_jobs(session, status="running") == ([], 0)


def test_a_transient_error_hands_the_job_back_or_fails_it_when_out_of_retries(
    catalog: Catalog,
) -> None:
    from sqlalchemy.exc import OperationalError

    def flaky(run: JobRun) -> dict[str, object]:
        raise OperationalError("UPDATE jobs", {}, Exception("database is locked"))

    job_id = make_job(catalog)
    with pytest.raises(OperationalError):
        execute(catalog, job_id, flaky, lease_s=30, retry_transient=True)
    job = row(catalog, job_id)
    assert job.status == "queued" and job.attempts == 1  # the retry claims it without waiting
    assert "transient" in job.message
    outcome = execute(catalog, job_id, flaky, lease_s=30, retry_transient=False)
    assert outcome.status == "failed" and outcome.attempt == 2
    assert "database is locked" in (row(catalog, job_id).error or "")
