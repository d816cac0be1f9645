"""What every response shares: timestamps with an offset, `{error, detail}` errors documented
in the OpenAPI schema, security headers, the CORS policy, and no secrets in errors or logs."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.catalog import Job
from core.config import Settings
from core.db import Catalog
from core.jobs import new_job
from core.redact import install_log_redaction, redact
from search.api.main import create_app
from search.service import Foley
from tests.search.test_uploads import KEY, make_client, wav_bytes

# ISO 8601 with a zone: Z or +hh:mm.
OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def client(settings: Settings, tiny_clap: Any) -> Iterator[TestClient]:
    yield from make_client(settings.model_copy(update={"api_keys": KEY}), tiny_clap)


def timestamps(body: Any) -> list[tuple[str, Any]]:
    """Every (key, value) whose key names a moment, anywhere in a JSON body."""
    found: list[tuple[str, Any]] = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key.endswith("_at") and value is not None:
                found.append((key, value))
            found.extend(timestamps(value))
    elif isinstance(body, list):
        for item in body:
            found.extend(timestamps(item))
    return found


def test_every_timestamp_has_an_offset(client: TestClient, library: Path) -> None:
    headers = {"X-API-Key": KEY}
    created = client.post("/api/uploads", files={"files": ("a.wav", wav_bytes(1))}, headers=headers)
    refused = client.post("/api/uploads", files={"files": ("b.wav", b"no")}, headers=headers)
    lib = client.post("/api/libraries", json={"path": str(library)}, headers=headers)
    bodies = [
        created.json(),  # fresh from Python
        refused.json(),
        lib.json(),
        client.get(created.json()["data"][0]["url"]).json(),  # read back from the catalog
        client.get("/api/jobs").json(),
        client.get("/api/libraries").json(),
    ]
    stamps = [stamp for body in bodies for stamp in timestamps(body)]
    assert len(stamps) >= 10
    for key, value in stamps:
        assert OFFSET.match(value), (key, value)
    fresh = created.json()["data"][0]["created_at"]
    again = client.get(created.json()["data"][0]["url"]).json()["created_at"]
    assert datetime.fromisoformat(fresh) == datetime.fromisoformat(again)


def test_catalog_reads_back_aware_timestamps(catalog: Catalog) -> None:
    with catalog.session() as session:
        job_id = new_job(session, "ping").id
    with catalog.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert job.created_at.tzinfo is not None and job.updated_at.utcoffset() is not None


def test_openapi_documents_every_error_as_error_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "detail"}
    errors = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"422", "429", "500"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status[0] in "45":
                    errors += 1
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (method, path, status)
    assert errors >= 40


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/api/nowhere", {}, 404),
        ("put", "/api/search", {}, 405),
        ("get", "/api/search", {"params": {"q": "x", "k": "many"}}, 422),
        ("get", "/api/sounds/999999", {}, 404),
        ("get", "/api/jobs/nope", {}, 404),
        ("post", "/api/uploads", {}, 401),
        ("post", "/api/libraries", {"headers": {"X-API-Key": "wrong-key"}}, 403),
        ("post", "/api/libraries", {"headers": {"X-API-Key": KEY}, "json": {}}, 422),
    ],
)
def test_errors_are_error_and_detail(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] and body["detail"]


def test_page_has_security_headers_and_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    # The page's own files may run and style it; no other site, no inline code without its hash.
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "http" not in policy and "*" not in policy
    for body in re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert client.get("/static/app.js").status_code == 200
    api = client.get("/api/health")
    assert api.headers["x-content-type-options"] == "nosniff"


def test_no_cors_by_default(client: TestClient) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    response = client.get("/api/search", params={"q": "rain"}, headers=origin)
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/api/uploads", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_only_for_named_origins(settings: Settings, tiny_clap: Any) -> None:
    allowed = "https://sounds.example"
    configured = settings.model_copy(update={"cors_origins": f"{allowed}/, https://b.example"})
    for client in make_client(configured, tiny_clap):
        ok = client.get("/api/search", params={"q": "rain"}, headers={"Origin": allowed})
        assert ok.headers["access-control-allow-origin"] == allowed
        other = client.get(
            "/api/search", params={"q": "rain"}, headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            "/api/uploads",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-API-Key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == allowed


def test_production_refuses_a_wildcard_origin(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FOLEY_CORS_ORIGINS"):
        Settings(
            environment="production", data_dir=tmp_path, api_keys="real-key-1", cors_origins="*"
        )


PASSWORD = "pg-s3cret-Passw0rd"
BROKER_PASSWORD = "redis-s3cret-Passw0rd"
API_KEY = "key-s3cret-0123456789"


def test_secrets_never_reach_logs_or_errors(
    settings: Settings, tiny_clap: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A broker on a closed port: the upload's queueing fails and its error reaches the client.
    configured = settings.model_copy(
        update={
            "api_keys": API_KEY,
            "broker_url": f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0",
            "result_backend": f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0",
        }
    )
    secrets = (API_KEY, BROKER_PASSWORD, PASSWORD)
    with caplog.at_level(logging.DEBUG):
        foley = Foley.open(configured, clap=tiny_clap)
        try:
            with TestClient(create_app(foley=foley)) as client:
                install_log_redaction(
                    configured.model_copy(
                        update={"database_url": f"postgresql://foley:{PASSWORD}@db/foley"}
                    )
                )
                headers = {"X-API-Key": API_KEY}
                files = {"files": ("a.wav", wav_bytes(1))}
                upload = client.post("/api/uploads", files=files, headers=headers)
                jobs = client.get("/api/jobs", headers=headers)
                wrong = client.post("/api/libraries", json={}, headers={"X-API-Key": "x" + API_KEY})
        finally:
            foley.close()
        log = logging.getLogger("tests.secrets")
        log.warning("connecting to postgresql://foley:%s@db/foley", PASSWORD)
        log.info("key %s presented", API_KEY)
        try:
            raise ConnectionError(f"redis://:{BROKER_PASSWORD}@127.0.0.1:1/0 refused")
        except ConnectionError:
            log.exception("broker down")
    assert upload.status_code == 503 and upload.json()["error"] == "queue_unavailable"
    assert wrong.status_code == 403
    texts = [upload.text, jobs.text, wrong.text, caplog.text]
    texts += [record.exc_text or "" for record in caplog.records]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "postgresql://foley:***@db/foley" in caplog.text
    assert redact(f"redis://u:{BROKER_PASSWORD}@h") == "redis://u:***@h"
