"""The query pipeline: embed the query, search the index, join the catalog."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from core.audio import decode
from core.catalog import Embedding, Sound
from core.vector_index import SearchFilter
from search.rerank import rerank_results, text_reranker, top_n
from search.results import SoundResult
from search.service import Foley

MAX_K = 200


class QueryError(ValueError):
    """The query itself is unusable (empty text, bad k, unknown sound)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}, got {k}")


def search_text(
    foley: Foley, query: str, k: int, flt: SearchFilter | None = None, rerank: bool = True
) -> list[SoundResult]:
    """Sounds matching a description; with `rerank`, the CLAP top N reranked by DiffATR (when
    a reranker fits the running CLAP) and the best k of them returned."""
    query = query.strip()
    if not query:
        raise QueryError("the query text is empty: describe the sound you are looking for")
    _check_k(k)
    vector = foley.clap.embed_text([query])[0]
    return search_vector(foley, vector, k, flt, rerank=rerank)


def search_audio(
    foley: Foley, data: bytes, name: str, k: int, flt: SearchFilter | None = None
) -> list[SoundResult]:
    """Sounds like an example clip; AudioError propagates for bad uploads."""
    _check_k(k)
    wave, _ = decode(data, target_sr=foley.clap.sample_rate, limits=foley.limits, name=name)
    vector = foley.clap.embed_audio([wave])[0]
    return search_vector(foley, vector, k, flt)


def search_like_sound(
    foley: Foley, sound_id: int, k: int, flt: SearchFilter | None = None
) -> list[SoundResult]:
    """Sounds like one already in the catalog, the sound itself left out."""
    _check_k(k)
    with foley.catalog.session() as session:
        row = session.scalar(
            select(Embedding).where(
                Embedding.sound_id == sound_id, Embedding.model_id == foley.clap.model_id
            )
        )
        if row is None:
            if session.get(Sound, sound_id) is None:
                raise QueryError(f"no sound with id {sound_id}", status=404)
            raise QueryError(f"sound {sound_id} has no embedding yet; index it first", status=409)
        vector = row.as_array()
    hits = search_vector(foley, vector, k + 1, flt)
    return [h for h in hits if h.id != sound_id][:k]


def search_vector(
    foley: Foley, vector: np.ndarray, k: int, flt: SearchFilter | None = None, rerank: bool = False
) -> list[SoundResult]:
    reranker = text_reranker(foley)[0] if rerank else None
    with foley.lock:
        hits = foley.index.search(vector, top_n(reranker, k), flt)
    if not hits:
        return []
    with foley.catalog.session() as session:
        sounds = {
            s.id: s
            for s in session.scalars(select(Sound).where(Sound.id.in_([h.id for h in hits])))
        }
    results = []
    for hit in hits:
        sound = sounds.get(hit.id)
        if sound is None:  # deleted in the catalog; the syncer has not caught up yet
            continue
        results.append(
            SoundResult(
                id=sound.id,
                score=float(hit.score),
                title=sound.title,
                duration=sound.duration,
                tags=list(sound.tags),
                source=sound.source,
                caption=sound.caption,
                format=sound.format,
                audio_url=f"/api/sounds/{sound.id}/audio",
                clap_score=float(hit.score),
            )
        )
    if reranker is not None:
        results = rerank_results(foley, reranker, vector, results)
    return results[:k]
