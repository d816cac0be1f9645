"""Secrets never leave the process in a log line or an error message.

The secrets are the values of settings that grant access: API keys, the Qdrant API key and
the passwords inside database, broker and result-backend URLs. `register_secrets` records them
once settings are known; `redact` replaces them (and any `user:password@` inside a URL) with
`***`. `install_log_redaction` makes every log record created in the process go through
`redact`, whichever logger or handler it reaches (uvicorn's, Celery's, a test's).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from core.config import Settings

MASK = "***"
# scheme://user:password@ -- the password part, whichever URL it is in.
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.\-]*://[^:/@\s]*:)([^@\s/]+)(@)")
# A key shorter than this is too likely to be an ordinary word to replace everywhere.
_MIN_SECRET = 4

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def secrets_of(settings: Settings) -> set[str]:
    """The secret values in `settings`."""
    found = set(settings.api_key_set)
    if settings.qdrant_api_key:
        found.add(settings.qdrant_api_key)
    urls = (settings.database_url, settings.broker_url, settings.result_backend)
    for url in (*urls, settings.rate_limit_storage, settings.qdrant_url):
        password = urlsplit(url).password if url else None
        if password:
            found.update({password, unquote(password)})
    return {s for s in found if len(s) >= _MIN_SECRET}


def register_secrets(settings: Settings) -> None:
    with _lock:
        _secrets.update(secrets_of(settings))


def redact(text: str) -> str:
    """`text` with every registered secret and every URL password replaced by `***`."""
    text = _URL_PASSWORD.sub(rf"\1{MASK}\3", text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redacting_factory(previous: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it when the record is emitted
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
        return record

    return factory


def install_log_redaction(settings: Settings) -> None:
    """Register the settings' secrets and redact every log record from now on (idempotent)."""
    global _installed
    register_secrets(settings)
    with _lock:
        if _installed:
            return
        logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
        _installed = True
