"""The objects a Foley process shares: catalog, vector index, CLAP, and the index syncer.

Built once per process (the API's lifespan or a CLI command). The embedded vector index
belongs to exactly one process, so every write to it goes through this object's syncer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.audio import DecodeLimits
from core.config import Settings
from core.db import Catalog
from core.jobs import TRANSIENT_ERRORS
from core.vector_index import VectorIndex, open_vector_index
from index_builder.syncer import IndexSyncer
from search.batching import BatchedSearches

if TYPE_CHECKING:
    from generative.clap.missing import MissingThreshold
    from generative.clap.model import ClapModel

log = logging.getLogger(__name__)


@dataclass
class Foley:
    settings: Settings
    catalog: Catalog
    clap: ClapModel
    index: VectorIndex
    syncer: IndexSyncer
    limits: DecodeLimits
    # The index is not shared between threads without it. Held only around index calls
    # (a query's ANN search, the syncer's writes), never around catalog reads or models.
    lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    # Concurrent text searches micro-batched (`search.pipeline.start_query_batching`), or None:
    # each search runs in its caller's thread.
    searches: BatchedSearches[Any, Any] | None = None
    _missing: tuple[MissingThreshold | None] | None = None  # the threshold, once looked up

    @classmethod
    def open(cls, settings: Settings, clap: ClapModel | None = None) -> Foley:
        from generative.registry import get_clap

        settings.ensure_dirs()
        catalog = Catalog(settings.catalog_url, serving=True)
        model = clap if clap is not None else get_clap(settings)
        try:
            index = open_vector_index(settings, model.dim)
        except Exception:
            catalog.dispose()
            raise
        lock = threading.RLock()
        syncer = IndexSyncer(catalog, index, model.model_id, index_lock=lock)
        limits = DecodeLimits.from_settings(settings)
        return cls(settings, catalog, model, index, syncer, limits, lock=lock)

    @property
    def missing_threshold(self) -> MissingThreshold | None:
        """Below this best CLAP cosine a text search says the library lacks the sound: the
        settings' value, else the one calibrated for the running CLAP, else None."""
        if self._missing is None:  # looked up once per process
            from generative.clap.missing import MissingThreshold, read_missing

            value, model_id = self.settings.missing_threshold, self.clap.model_id
            self._missing = (
                MissingThreshold(value, model_id)
                if value is not None
                else read_missing(self.settings.clap_checkpoint, model_id),
            )
        return self._missing[0]

    def stop_query_batching(self) -> None:
        searches, self.searches = self.searches, None
        if searches is not None:
            searches.close()

    def sync(self) -> int:
        # The syncer takes `lock` itself, around its index writes only.
        return self.syncer.sync()

    def start_background_sync(self, interval_s: float = 1.0) -> None:
        """Apply outbox entries written by other processes (a CLI run, a worker)."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    applied = self.sync()
                    if applied:
                        log.info("applied %d catalog changes to the index", applied)
                except TRANSIENT_ERRORS as exc:  # the catalog restarting: one line, not a trace
                    log.warning("index sync waits for the catalog: %s", exc)
                except Exception:
                    log.exception("index sync failed; retrying")

        self._thread = threading.Thread(target=loop, name="foley-index-sync", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop_query_batching()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self.lock:
            self.index.close()
        self.catalog.dispose()
