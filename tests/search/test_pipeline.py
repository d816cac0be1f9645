"""The query pipeline ranks on ids and scores and reads catalog rows only for the sounds it
returns: its lists equal those built the long way from full results, it reads the catalog in
three statements, and it still leaves out what the catalog no longer has."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event, select

from core.catalog import Embedding, Sound
from core.words import words_search
from search.fusion import FUSION_DEPTH, reciprocal_rank_fusion
from search.pipeline import find_text
from search.rerank import rerank_results, text_reranker, top_n
from search.results import SoundResult
from search.service import Foley

QUERY = "tones clip 07"  # its words match every title, the tones and clip 07 best


@pytest.fixture
def foley(foley_with_reranker: Foley) -> Foley:
    return foley_with_reranker


@contextmanager
def statements(foley: Foley) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements the catalog runs meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        seen.append((sql, params))

    event.listen(foley.catalog.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(foley.catalog.engine, "before_cursor_execute", record)


def full_result(sound: Sound, score: float, **scores: float) -> SoundResult:
    return SoundResult(
        sound.id, score, sound.title, sound.duration, list(sound.tags), sound.source,
        sound.caption, sound.format, f"/api/sounds/{sound.id}/audio", **scores,
    )  # fmt: skip


def the_long_way(foley: Foley, query: str, k: int) -> list[SoundResult]:
    """Hybrid search as full results all along: every candidate's row read, reranked, fused."""
    reranker = text_reranker(foley)[0]
    assert reranker is not None
    plain = foley.clap.embed_text([query], fill=False)[0]
    vector = foley.clap.expand(plain[None])[0]  # the index is searched with the expanded query
    hits = foley.index.search(vector, top_n(reranker, FUSION_DEPTH))
    with foley.catalog.session() as session:
        words = words_search(session, query, FUSION_DEPTH)
        ids = [h.id for h in hits] + [sound_id for sound_id, _ in words]
        sounds = {s.id: s for s in session.scalars(select(Sound).where(Sound.id.in_(ids)))}
        by_audio = [full_result(sounds[h.id], h.score, clap_score=h.score) for h in hits]
        by_words = [full_result(sounds[i], score, words_score=score) for i, score in words]
    by_audio = rerank_results(foley, reranker, plain, by_audio)[:FUSION_DEPTH]
    return reciprocal_rank_fusion(by_audio, by_words)[:k]


def test_hybrid_search_equals_fusing_full_results(foley: Foley) -> None:
    expected = the_long_way(foley, QUERY, 12)
    got = find_text(foley, QUERY, 12).results
    assert got == expected
    assert {r.words_rank is not None for r in got} == {True}
    assert any(r.audio_rank != r.words_rank for r in got)


def test_a_search_reads_the_catalog_in_three_statements(foley: Foley) -> None:
    with statements(foley) as seen:
        results = find_text(foley, QUERY, 5).results
    # The candidates' vectors, the words list, and the rows of the 5 results: nothing per row.
    assert len(seen) == 3, [sql for sql, _ in seen]
    sql, params = seen[-1]
    assert "FROM sounds" in sql and sorted(params) == sorted(r.id for r in results)
    assert len(results) == 5


@pytest.mark.parametrize("mode", ["audio", "hybrid"])
def test_a_sound_gone_from_the_catalog_is_left_out(foley: Foley, mode: str) -> None:
    first = find_text(foley, QUERY, 10, mode=mode).results
    gone = first[0].id
    with foley.catalog.session() as session:  # the index still has it: not synced yet
        session.delete(session.get(Sound, gone))
    after = find_text(foley, QUERY, 10, mode=mode).results
    assert gone not in {r.id for r in after}
    assert len(after) == 10


def test_a_candidate_without_a_vector_keeps_its_clap_score(foley: Foley) -> None:
    first = find_text(foley, QUERY, 30, mode="audio").results
    unvectored = first[3].id
    with foley.catalog.session() as session:  # being re-embedded: the row is there, no vector
        session.execute(delete(Embedding).where(Embedding.sound_id == unvectored))
    after = {r.id: r for r in find_text(foley, QUERY, 30, mode="audio").results}
    assert len(after) == 30
    assert after[unvectored].score == after[unvectored].clap_score
    assert all(r.score > r.clap_score for i, r in after.items() if i != unvectored)  # type: ignore[operator]
