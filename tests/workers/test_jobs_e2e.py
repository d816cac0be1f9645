"""Jobs end to end through a real worker process and a real broker (no eager mode).

Each test runs against the embedded queue and, when FOLEY_TEST_REDIS_URL and
FOLEY_TEST_POSTGRES_URL are set, against Redis + PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
import soundfile as sf
from sqlalchemy import func, select

from core.catalog import OutboxEntry, Sound
from tests.sounds import SAMPLE_RATE, tone, write_library
from tests.workers.deployment import Deployment

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def wav(kind: int, seconds: float = 1.5) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind, seconds), SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


def flac(kind: int, seconds: float = 3.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(kind, seconds), SAMPLE_RATE, format="FLAC")
    return buffer.getvalue()


def upload(dep: Deployment, *files: tuple[str, bytes]) -> list[dict]:
    response = dep.client.post(
        "/api/uploads", files=[("files", f) for f in files], headers=dep.headers
    )
    assert response.status_code == 202, response.text
    jobs: list[dict] = response.json()["data"]
    assert response.headers["location"] == jobs[0]["url"]
    return jobs


def sounds_with_hash(dep: Deployment, digest: str) -> int:
    with dep.foley.catalog.session() as session:
        query = select(func.count()).where(Sound.content_hash == digest)
        return session.scalar(query) or 0


def upserts_for(dep: Deployment, sound_id: int) -> int:
    with dep.foley.catalog.session() as session:
        query = select(func.count()).where(OutboxEntry.sound_id == sound_id)
        return session.scalar(query) or 0


def stored(dep: Deployment, digest: str) -> list[Path]:
    return sorted(dep.settings.store_path.rglob(f"{digest}.*"))


def test_upload_is_indexed_then_found_by_search(deployment: Deployment) -> None:
    dep = deployment
    first, second = upload(dep, ("Glass_Clink.wav", wav(21)), ("low-hum.wav", wav(22)))
    done = [dep.wait(job["id"]) for job in (first, second)]
    assert [job["status"] for job in done] == ["succeeded", "succeeded"], done
    results = [job["result"] for job in done]
    assert [r["duplicate"] for r in results] == [False, False]
    assert results[0]["sound_id"] != results[1]["sound_id"]
    assert done[0]["progress"] == 1.0 and done[0]["attempts"] == 1

    # The API's index syncer applies the worker's outbox entry within a moment.
    searchable = dep.wait(first["id"], where=lambda job: job["searchable"] is True, timeout=10)
    assert searchable["status"] == "succeeded"
    found = dep.client.post(
        "/api/search/audio", files={"file": ("q.wav", wav(21))}, data={"k": 3}
    ).json()["data"]
    assert found[0]["id"] == results[0]["sound_id"]
    assert found[0]["score"] == pytest.approx(1.0, abs=1e-3)
    dep.wait(second["id"], where=lambda job: job["searchable"] is True, timeout=10)
    uploads = dep.client.get("/api/search", params={"q": "a sound", "source": "upload", "k": 50})
    assert {r["sound_id"] for r in results} <= {hit["id"] for hit in uploads.json()["data"]}

    sound = dep.client.get(f"/api/sounds/{results[0]['sound_id']}").json()
    assert (sound["source"], sound["title"]) == ("upload", "Glass Clink")
    assert sound["locations"] == [str(stored(dep, results[0]["content_hash"])[0])]
    audio = dep.client.get(sound["audio_url"])
    assert audio.status_code == 200 and audio.content == wav(21)


def test_same_bytes_again_return_the_existing_sound(deployment: Deployment) -> None:
    dep = deployment
    (original,) = upload(dep, ("rain.wav", wav(23)))
    first = dep.wait(original["id"])["result"]
    (again,) = upload(dep, ("rain (copy).wav", wav(23)))
    repeat = dep.wait(again["id"])
    assert repeat["status"] == "succeeded"
    assert repeat["result"]["duplicate"] is True
    assert repeat["result"]["sound_id"] == first["sound_id"]
    assert sounds_with_hash(dep, first["content_hash"]) == 1
    assert upserts_for(dep, first["sound_id"]) == 1
    assert len(stored(dep, first["content_hash"])) == 1


def test_corrupt_and_non_audio_uploads_fail_and_leave_nothing(deployment: Deployment) -> None:
    dep = deployment
    whole = flac(24)
    cut, text = whole[: len(whole) // 2], b"definitely not audio\n" * 50
    truncated, not_audio = upload(dep, ("cut.flac", cut), ("readme.wav", text))
    assert not_audio["status"] == "failed"  # refused from its header, never queued
    assert not_audio["error"].startswith("readme.wav is not a WAV, FLAC")
    assert truncated["status"] == "queued"  # the header is fine; decoding is not
    failed = dep.wait(truncated["id"])
    assert failed["status"] == "failed", failed
    assert failed["error"].startswith("cut.flac is damaged or cut off")
    digest = truncated["params"]["content_hash"]
    assert stored(dep, digest) == [] and sounds_with_hash(dep, digest) == 0
    assert stored(dep, not_audio["params"]["content_hash"]) == []


def test_cancel_stops_running_and_queued_jobs(deployment: Deployment) -> None:
    dep = deployment
    # One long job per pool process, so that the next one waits in the queue.
    running = [dep.submit("ping", seconds=30) for _ in range(dep.settings.worker_processes)]
    for job_id in running:
        dep.wait(job_id, until=("running",), where=lambda job: job["progress"] > 0)
    waiting = dep.submit("ping")
    cancel_waiting = dep.client.delete(f"/api/jobs/{waiting}", headers=dep.headers)
    assert cancel_waiting.status_code == 202 and cancel_waiting.json()["status"] == "cancelled"
    for job_id in running:
        cancel_running = dep.client.delete(f"/api/jobs/{job_id}", headers=dep.headers)
        assert cancel_running.status_code == 202 and cancel_running.json()["status"] == "cancelled"

    # The worker is free again within a progress report, not after 30 s.
    after = dep.wait(dep.submit("ping"), timeout=15)
    assert after["status"] == "succeeded"
    for job_id in running:
        stopped = dep.job(job_id)
        assert stopped["status"] == "cancelled" and stopped["progress"] < 0.5
        assert stopped["attempts"] == 1 and stopped["result"] is None
    skipped = dep.job(waiting)
    assert skipped["status"] == "cancelled" and skipped["attempts"] == 0
    finished = dep.client.delete(f"/api/jobs/{after['id']}", headers=dep.headers)
    assert finished.status_code == 409 and finished.json()["error"] == "job_finished"


def test_library_scan_runs_as_a_job(deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment
    root = tmp_path / "sfx"
    write_library(root, count=6, seconds=1.0)
    created = dep.client.post("/api/libraries", json={"path": str(root)}, headers=dep.headers)
    assert created.status_code == 201
    scan = dep.client.post(created.json()["scan_url"], headers=dep.headers)
    assert scan.status_code == 202 and scan.headers["location"] == scan.json()["url"]
    job = dep.wait(scan.json()["id"])
    assert job["status"] == "succeeded", job
    assert (job["result"]["files"], job["result"]["added"], job["result"]["failed"]) == (6, 6, 0)
    assert job["progress"] == 1.0
    listed = dep.client.get("/api/libraries").json()["data"]
    mine = next(lib for lib in listed if lib["id"] == created.json()["id"])
    assert mine["sounds"] == 6 and mine["last_scan_at"] is not None


def test_caption_jobs_run_on_the_worker(deployment: Deployment) -> None:
    dep = deployment
    (job,) = upload(dep, ("Kettle whistle.wav", wav(31)))
    sound_id = dep.wait(job["id"])["result"]["sound_id"]
    url = f"/api/sounds/{sound_id}/caption"
    assert dep.client.post(url).status_code == 401
    assert dep.client.post("/api/sounds/424242/caption", headers=dep.headers).status_code == 404
    response = dep.client.post(url, headers=dep.headers)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert response.headers["location"] == queued["url"] == f"/api/jobs/{queued['id']}"
    assert (queued["kind"], queued["params"]) == (
        "caption",
        {"sound_ids": [sound_id], "force": True},
    )
    finished = dep.wait(queued["id"])
    captioner = dep.client.get("/api/health").json()["captioner"]
    record = dep.client.get(f"/api/sounds/{sound_id}").json()
    if captioner["loaded"]:
        assert finished["status"] == "succeeded", finished
        assert finished["result"]["captioned"] == [sound_id]
        assert record["caption_model"] == captioner["model_id"] == finished["result"]["model_id"]
        assert record["caption"] and record["caption_by"] == "captioner"
    else:
        # No captioner model in this build or deployment: the job says why, nothing changes.
        assert finished["status"] == "failed"
        assert finished["error"] == f"no captioner here: {captioner['status']}"
        assert record["caption_model"] is None and record["caption"] is None


def _kill_mid_upload(dep: Deployment, kind: int, kill: str) -> tuple[dict, dict]:
    """Upload a long clip, SIGKILL the worker while it embeds, and return (before, after)."""
    (job,) = upload(dep, (f"long-{kind}.wav", wav(kind, seconds=90)))
    dep.wait(job["id"], until=("running",), where=lambda j: 0.3 <= j["progress"] < 0.9)
    if kill == "pool":
        # The pool process embedding the long clip; the others (idle) are left alone.
        os.kill(dep.busy_pool_pid(), signal.SIGKILL)
    else:
        dep.kill_worker()
        dep.start_worker()
    before = dep.job(job["id"])
    after = dep.wait(job["id"], timeout=600)  # a loaded machine re-runs 90 s of audio slowly
    return before, after


@pytest.mark.parametrize("kill", ["pool", "worker"])
def test_a_killed_worker_does_not_lose_or_duplicate_the_job(
    deployment: Deployment, kill: str
) -> None:
    dep = deployment
    before, after = _kill_mid_upload(dep, 30 if kill == "pool" else 31, kill)
    assert before["status"] == "running" and before["attempts"] == 1  # killed mid-job
    assert after["status"] == "succeeded", f"{after}\n{dep.log_tail()}"
    assert after["attempts"] == 2 and after["result"]["duplicate"] is False
    digest = after["result"]["content_hash"]
    assert sounds_with_hash(dep, digest) == 1
    assert upserts_for(dep, after["result"]["sound_id"]) == 1  # the killed attempt wrote nothing
    assert len(stored(dep, digest)) == 1


def test_a_pool_process_killed_while_it_waits_does_not_stop_the_worker(
    deployment: Deployment,
) -> None:
    # An idle pool process waits for the next task; killing it must leave the others (and
    # its replacement) able to take tasks.
    dep = deployment
    assert dep.wait(dep.submit("ping"))["status"] == "succeeded"
    for _ in range(3):
        victim = dep.pool_pids()[0]
        os.kill(victim, signal.SIGKILL)
        jobs = [dep.submit("ping") for _ in range(3)]
        for job_id in jobs:
            assert dep.wait(job_id, timeout=60)["status"] == "succeeded", dep.log_tail()
        deadline = time.monotonic() + 60
        while victim in dep.pool_pids() or len(dep.pool_pids()) < dep.settings.worker_processes:
            assert time.monotonic() < deadline, dep.log_tail()
            time.sleep(0.05)


def test_generation_runs_on_the_gpu_queue_and_makes_searchable_sounds(
    deployment: Deployment,
) -> None:
    dep = deployment
    (job,) = upload(dep, ("Church bell.wav", wav(41)))
    dep.wait(job["id"], where=lambda j: j["searchable"] is True)
    body = {"prompt": "a church bell", "seconds": 1.0, "count": 2, "seed": 3, "neighbours": 1,
            "steps": 2}  # fmt: skip
    assert dep.client.post("/api/generate", json=body).status_code == 401
    for bad, said in (({"seconds": 30}, "seconds"), ({"prompt": ""}, "prompt"),
                      ({"guidance_mode": "loud"}, "guidance_mode")):  # fmt: skip
        refused = dep.client.post("/api/generate", json={**body, **bad}, headers=dep.headers)
        assert refused.status_code == 422 and said in refused.text
    response = dep.client.post("/api/generate", json=body, headers=dep.headers)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert response.headers["location"] == f"/api/jobs/{queued['id']}"
    # The library's sound nearest to the prompt (the tiny CLAP decides which).
    (neighbour,) = queued["params"]["neighbour_ids"]
    assert queued["kind"] == "generate" and dep.client.get(f"/api/sounds/{neighbour}").is_success
    finished = dep.wait(queued["id"], timeout=300)
    assert finished["status"] == "succeeded", finished
    assert finished["progress"] == 1.0
    made = [entry["sound_id"] for entry in finished["result"]["sounds"]]
    assert len(set(made)) == 2
    for sound_id in made:
        record = dep.client.get(f"/api/sounds/{sound_id}").json()
        assert (record["source"], record["title"], record["duration"]) == (
            "generated", "a church bell", 1.0,
        )  # fmt: skip
        provenance = record["generation"]
        assert provenance["prompt"] == "a church bell" and provenance["job_id"] == queued["id"]
        assert provenance["neighbour_ids"] == [neighbour] and provenance["settings"]["steps"] == 2
        assert dep.client.get(record["audio_url"]).status_code == 200
    # Indexed like any sound, and found with the `generated` filter.
    dep.wait(queued["id"], where=lambda job: job["searchable"] is True, timeout=10)
    found = dep.client.get("/api/search", params={"q": "bell", "source": "generated", "k": 10})
    assert found.status_code == 200
    assert {hit["id"] for hit in found.json()["data"]} == set(made)
