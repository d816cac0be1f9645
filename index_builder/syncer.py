"""The index syncer: applies the catalog's outbox to the vector index.

Each outbox entry only names a sound; the syncer writes what the catalog says *now*
about that sound (its embedding under the index's model, or nothing), so applying an
entry twice, or out of order within a chunk, changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select

from core.catalog import Embedding, IndexState, OutboxEntry, Sound
from core.db import Catalog
from core.vector_index import IndexedPoint, VectorIndex

log = logging.getLogger(__name__)

STATE_NAME = "default"


def payload_for(sound: Sound) -> dict[str, object]:
    return {"duration": float(sound.duration), "source": sound.source, "tags": list(sound.tags)}


@dataclass
class IndexDiff:
    missing: list[int] = field(default_factory=list)  # in the catalog, not in the index
    extra: list[int] = field(default_factory=list)  # in the index, not in the catalog
    stale: list[int] = field(default_factory=list)  # in both, with different vectors
    pending: int = 0  # outbox entries not applied yet
    model_mismatch: str | None = None

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.stale or self.model_mismatch)


class IndexSyncer:
    def __init__(
        self,
        catalog: Catalog,
        index: VectorIndex,
        model_id: str,
        index_lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.catalog = catalog
        self.index = index
        self.model_id = model_id
        # Held around index calls only: searches wait for a write, never for catalog reads.
        self.index_lock: AbstractContextManager[object] = index_lock or threading.RLock()
        self._syncing = threading.Lock()  # one sync at a time; searches do not take it

    def _state(self, session: object) -> IndexState:
        from sqlalchemy.orm import Session

        assert isinstance(session, Session)
        state = session.get(IndexState, STATE_NAME)
        if state is None:
            state = IndexState(name=STATE_NAME, model_id=self.model_id, applied_seq=0)
            session.add(state)
            session.flush()
        return state

    def applied_seq(self) -> int:
        with self.catalog.session() as session:
            return self._state(session).applied_seq

    def pending(self) -> int:
        with self.catalog.session() as session:
            applied = self._state(session).applied_seq
            return session.scalar(select(func.count()).where(OutboxEntry.seq > applied)) or 0

    def indexed_model(self) -> str | None:
        with self.catalog.session() as session:
            return self._state(session).model_id

    def sync(self, chunk: int = 512) -> int:
        """Apply every pending outbox entry; returns how many were applied."""
        with self._syncing:
            return self._sync(chunk)

    def _sync(self, chunk: int) -> int:
        if self.indexed_model() != self.model_id:
            log.warning(
                "index holds model %s; rebuilding for %s", self.indexed_model(), self.model_id
            )
            self.rebuild()
            return 0
        applied = 0
        while True:
            with self.catalog.session() as session:
                state = self._state(session)
                entries = session.scalars(
                    select(OutboxEntry)
                    .where(OutboxEntry.seq > state.applied_seq)
                    .order_by(OutboxEntry.seq)
                    .limit(chunk)
                ).all()
                if not entries:
                    return applied
                self._apply(session, sorted({e.sound_id for e in entries}))
                state.applied_seq = entries[-1].seq
                applied += len(entries)

    def _apply(self, session: object, sound_ids: Sequence[int]) -> None:
        from sqlalchemy.orm import Session

        assert isinstance(session, Session)
        rows = session.execute(
            select(Sound, Embedding)
            .join(Embedding, Embedding.sound_id == Sound.id)
            .where(Sound.id.in_(sound_ids), Embedding.model_id == self.model_id)
        ).all()
        points = [IndexedPoint(s.id, e.as_array(), payload_for(s)) for s, e in rows]
        present = {p.id for p in points}
        gone = [i for i in sound_ids if i not in present]
        with self.index_lock:
            if points:
                self.index.upsert(points)
            if gone:
                self.index.delete(gone)

    def rebuild(self, chunk: int = 512, progress: Callable[[int, int], None] | None = None) -> int:
        """Clear the index and load it from the catalog alone (`foley reindex`). Searches
        wait until it is whole again rather than see it half loaded."""
        with self.index_lock:
            return self._rebuild(chunk, progress)

    def _rebuild(self, chunk: int, progress: Callable[[int, int], None] | None) -> int:
        with self.catalog.session() as session:
            last_seq = session.scalar(select(func.max(OutboxEntry.seq))) or 0
            ids = list(
                session.scalars(
                    select(Embedding.sound_id)
                    .where(Embedding.model_id == self.model_id)
                    .order_by(Embedding.sound_id)
                )
            )
        self.index.clear()
        for start in range(0, len(ids), chunk):
            with self.catalog.session() as session:
                self._apply(session, ids[start : start + chunk])
            if progress:
                progress(min(start + chunk, len(ids)), len(ids))
        self.index.optimize()
        with self.catalog.session() as session:
            state = self._state(session)
            state.model_id = self.model_id
            # Entries after `last_seq` are applied by the next sync; applying twice is harmless.
            state.applied_seq = last_seq
        return len(ids)

    def diff(self, check_vectors: bool = True) -> IndexDiff:
        """What differs between the catalog and the index (`foley doctor`)."""
        diff = IndexDiff(pending=self.pending())
        indexed = self.indexed_model()
        if indexed != self.model_id:
            diff.model_mismatch = f"index built with {indexed}, configured model is {self.model_id}"
        with self.catalog.session() as session:
            catalog_ids = set(
                session.scalars(
                    select(Embedding.sound_id).where(Embedding.model_id == self.model_id)
                )
            )
        with self.index_lock:
            index_ids = self.index.ids()
        diff.missing = sorted(catalog_ids - index_ids)
        diff.extra = sorted(index_ids - catalog_ids)
        if check_vectors:
            diff.stale = self._stale(sorted(catalog_ids & index_ids))
        return diff

    def _stale(self, ids: list[int], chunk: int = 512) -> list[int]:
        stale: list[int] = []
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            with self.index_lock:
                stored = self.index.vectors(part)
            with self.catalog.session() as session:
                rows = session.scalars(
                    select(Embedding).where(
                        Embedding.sound_id.in_(part), Embedding.model_id == self.model_id
                    )
                )
                for row in rows:
                    vector = stored.get(row.sound_id)
                    if vector is None or not np.allclose(vector, row.as_array(), atol=1e-4):
                        stale.append(row.sound_id)
        return sorted(stale)

    def repair(self, diff: IndexDiff) -> None:
        if diff.model_mismatch:
            self.rebuild()
            return
        if diff.extra:
            with self.index_lock:
                self.index.delete(diff.extra)
        fix = sorted(set(diff.missing) | set(diff.stale))
        for start in range(0, len(fix), 512):
            with self.catalog.session() as session:
                self._apply(session, fix[start : start + 512])
        self.sync()
