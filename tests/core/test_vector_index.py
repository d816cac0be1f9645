"""Both vector index back ends against the same behaviour: real Qdrant Edge, real qdrant-client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.config import Settings
from core.vector_index import (
    AnnParams,
    EdgeVectorIndex,
    IndexedPoint,
    IndexLockedError,
    Query,
    SearchFilter,
    ServerVectorIndex,
    VectorIndex,
    VectorIndexError,
    open_vector_index,
)

DIM = 16


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _points(n: int = 12, seed: int = 0) -> list[IndexedPoint]:
    """Points 1..n: duration i seconds, source cycling, tag "even" on even ids, "loud" on i%3==0."""
    rng = np.random.default_rng(seed)
    sources = ("library", "upload", "generated")
    points = []
    for i in range(1, n + 1):
        tags = [t for t, on in (("even", i % 2 == 0), ("loud", i % 3 == 0)) if on]
        payload = {"duration": float(i), "source": sources[i % 3], "tags": tags}
        points.append(IndexedPoint(i, rng.standard_normal(DIM).astype(np.float32), payload))
    return points


@pytest.fixture(params=["edge", "server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    opened: VectorIndex
    if request.param == "edge":
        opened = EdgeVectorIndex(tmp_path / "index", DIM)
    else:
        opened = ServerVectorIndex(":memory:", "sounds", DIM)
    yield opened
    opened.close()


def test_exact_vector_is_found_first(index: VectorIndex) -> None:
    points = _points()
    index.upsert(points)
    index.optimize()

    hits = index.search(points[4].vector * 3.0, k=3)  # cosine ignores the scale

    assert [h.id for h in hits][0] == 5
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].payload == points[4].payload
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert index.count() == 12
    # Without payloads: the same hits, nothing converted (the search pipeline's way).
    bare = index.search(points[4].vector * 3.0, k=3, with_payload=False)
    assert [(h.id, h.score) for h in bare] == [(h.id, h.score) for h in hits]
    assert all(h.payload == {} for h in bare)
    filtered = index.search(points[4].vector, k=3, flt=SearchFilter(tags=("even",)),
                            with_payload=False)  # fmt: skip
    assert filtered and all(h.id % 2 == 0 for h in filtered)


def test_search_many_answers_each_query_as_alone(index: VectorIndex) -> None:
    points = _points()
    index.upsert(points)
    queries = [
        Query(points[4].vector, 3),
        Query(points[0].vector, 12, SearchFilter(tags=("even",))),
        Query(points[7].vector, 5, SearchFilter(min_duration=3.0, max_duration=6.0)),
        Query(points[1].vector, 4, SearchFilter(source="generated", tags=("loud",))),
    ]
    many = index.search_many(queries)
    assert len(many) == len(queries)
    for query, hits in zip(queries, many, strict=True):
        alone = index.search(query.vector, query.k, query.flt, with_payload=False)
        assert [(h.id, h.score) for h in hits] == [(h.id, h.score) for h in alone]
        assert all(h.payload == {} for h in hits)
    assert [h.id for h in many[0]][0] == 5
    assert {h.id for h in many[1]} == {2, 4, 6, 8, 10, 12}
    assert index.search_many([]) == []
    with pytest.raises(ValueError):
        index.search_many([Query(points[0].vector, 0)])


def test_upsert_twice_replaces_in_place(index: VectorIndex) -> None:
    points = _points()
    index.upsert(points)
    index.upsert(points)
    assert index.count() == 12

    replacement = np.zeros(DIM, dtype=np.float32)
    replacement[0] = 1.0
    index.upsert([IndexedPoint(3, replacement, {"duration": 9.5, "source": "upload", "tags": []})])

    assert index.count() == 12
    np.testing.assert_allclose(index.vectors([3])[3], replacement, atol=1e-6)
    hit = index.search(replacement, k=1)[0]
    assert (hit.id, hit.payload["duration"]) == (3, 9.5)


def test_delete_is_idempotent(index: VectorIndex) -> None:
    index.upsert(_points())
    index.delete([2, 4, 999])
    index.delete([2, 4])

    assert index.count() == 10
    assert index.ids() == set(range(1, 13)) - {2, 4}
    index.delete([])
    assert index.count() == 10


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (SearchFilter(min_duration=3.0, max_duration=6.0), {3, 4, 5, 6}),
        (SearchFilter(max_duration=2.0), {1, 2}),
        (SearchFilter(source="library"), {3, 6, 9, 12}),
        (SearchFilter(tags=("even",)), {2, 4, 6, 8, 10, 12}),
        (SearchFilter(tags=("even", "loud")), {6, 12}),
        (SearchFilter(min_duration=7.0, source="generated", tags=("loud",)), set()),
        (SearchFilter(min_duration=7.0, source="upload", tags=("even",)), {10}),
    ],
)
def test_filters(index: VectorIndex, flt: SearchFilter, expected: set[int]) -> None:
    points = _points()
    index.upsert(points)

    hits = index.search(points[0].vector, k=12, flt=flt)

    assert {h.id for h in hits} == expected


def test_ids_and_vectors(index: VectorIndex) -> None:
    points = _points()
    index.upsert(points)

    stored = index.vectors([1, 7, 404])

    assert index.ids() == set(range(1, 13))
    assert set(stored) == {1, 7}
    # Cosine back ends keep unit-normalised vectors.
    np.testing.assert_allclose(stored[7], _unit(points[6].vector), atol=1e-5)
    assert stored[7].dtype == np.float32


def test_clear_removes_everything_and_index_stays_usable(index: VectorIndex) -> None:
    index.upsert(_points())
    index.clear()

    assert index.count() == 0
    assert index.ids() == set()
    assert index.search(_points()[0].vector, k=5) == []

    index.upsert(_points(3))
    assert index.ids() == {1, 2, 3}


def test_wrong_shapes_are_refused(index: VectorIndex) -> None:
    with pytest.raises(VectorIndexError, match=r"shape \(16,\)"):
        index.upsert([IndexedPoint(1, np.ones(DIM + 1, dtype=np.float32), {})])
    with pytest.raises(VectorIndexError, match="shape"):
        index.search(np.ones(DIM - 1), k=1)
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.ones(DIM), k=0)
    assert index.count() == 0


def test_edge_reopen_keeps_points(tmp_path: Path) -> None:
    points = _points()
    first = EdgeVectorIndex(tmp_path / "index", DIM)
    first.upsert(points)
    first.delete([12])
    first.close()

    reopened = EdgeVectorIndex(tmp_path / "index", DIM)
    try:
        assert reopened.ids() == set(range(1, 12))
        assert reopened.search(points[8].vector, k=1)[0].id == 9
        assert reopened.search(points[0].vector, k=12, flt=SearchFilter(tags=("loud",)))
    finally:
        reopened.close()


def test_edge_second_open_is_refused(tmp_path: Path) -> None:
    first = EdgeVectorIndex(tmp_path / "index", DIM)
    try:
        with pytest.raises(IndexLockedError, match="in use by another Foley process"):
            EdgeVectorIndex(tmp_path / "index", DIM)
        first.upsert(_points(2))  # the holder is unaffected
        assert first.count() == 2
    finally:
        first.close()


def test_edge_dim_mismatch_is_refused(tmp_path: Path) -> None:
    EdgeVectorIndex(tmp_path / "index", DIM).close()

    with pytest.raises(VectorIndexError, match="holds 16-d vectors .* gives 32-d"):
        EdgeVectorIndex(tmp_path / "index", 32)


def test_closed_edge_index_says_so(tmp_path: Path) -> None:
    index = EdgeVectorIndex(tmp_path / "index", DIM)
    index.close()
    index.close()

    with pytest.raises(VectorIndexError, match="closed"):
        index.count()


def test_open_vector_index_follows_settings(tmp_path: Path) -> None:
    embedded = open_vector_index(Settings(data_dir=tmp_path), DIM)
    server = open_vector_index(Settings(data_dir=tmp_path, qdrant_url=":memory:"), DIM)
    try:
        assert isinstance(embedded, EdgeVectorIndex)
        assert embedded.path == tmp_path / "index"
        assert isinstance(server, ServerVectorIndex)
        assert server.collection == "sounds"
    finally:
        embedded.close()
        server.close()


def test_server_refuses_a_non_url() -> None:
    with pytest.raises(VectorIndexError, match="http"):
        ServerVectorIndex("/var/lib/qdrant", "sounds", DIM)


@pytest.mark.parametrize("quantization", ["none", "int8", "binary"])
def test_edge_ann_settings_build_and_search(tmp_path: Path, quantization: str) -> None:
    ann = AnnParams(m=8, ef_construct=32, hnsw_ef=16, quantization=quantization, exact_below=0)
    index = EdgeVectorIndex(tmp_path / "index", DIM, ann)
    try:
        points = _points(200)
        index.upsert(points)
        index.optimize()

        hits = index.search(points[41].vector, k=5)
        config = json.loads((tmp_path / "index" / "edge_config.json").read_text())
    finally:
        index.close()

    # Rescoring on the original vectors gives the exact cosine, even after quantization.
    assert hits[0].id == 42
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert (config["hnsw_config"]["m"], config["hnsw_config"]["ef_construct"]) == (8, 32)
    assert (quantization in json.dumps(config.get("quantization_config"))) == (
        quantization != "none"
    )


def test_ann_params_exact_rule_and_beam() -> None:
    ann = AnnParams(hnsw_ef=64, oversampling=3.0, quantization="int8", exact_below=1000)

    assert ann.exact(1000) and not ann.exact(1001)
    assert ann.ef(10) == 64
    assert ann.ef(50) == 200  # never narrower than 4 x the results asked for
    with pytest.raises(ValueError, match="quantization"):
        AnnParams(quantization="pq")
    with pytest.raises(ValueError, match="oversampling"):
        AnnParams(oversampling=0.5)


def test_ann_settings_reach_both_back_ends(tmp_path: Path) -> None:
    tuned = {"index_hnsw_m": 24, "index_quantization": "int8", "index_exact_below": 5}
    expected = AnnParams(m=24, quantization="int8", exact_below=5)
    embedded = open_vector_index(Settings(data_dir=tmp_path, **tuned), DIM)
    server = open_vector_index(Settings(data_dir=tmp_path, qdrant_url=":memory:", **tuned), DIM)
    try:
        assert isinstance(embedded, EdgeVectorIndex) and isinstance(server, ServerVectorIndex)
        assert embedded.ann == server.ann == expected
        server.upsert(_points())
        assert server.search(_points()[2].vector, k=1)[0].id == 3
    finally:
        embedded.close()
        server.close()


def test_bad_ann_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="index_quantization"):
        Settings(index_quantization="pq")
    with pytest.raises(ValueError, match="index_oversampling"):
        Settings(index_oversampling=0.9)
