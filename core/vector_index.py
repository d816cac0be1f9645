"""The vector index: one small interface, two back ends.

`EdgeVectorIndex` runs the Qdrant engine in-process on a folder (the embedded default);
`ServerVectorIndex` talks to a Qdrant server through qdrant-client (scale-out). Both store one
named cosine vector per sound, with the sound id as point id, so every write is idempotent.
The index is a projection of the catalog: `clear()` followed by re-upserting rebuilds it.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import qdrant_edge as edge

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from core.config import Settings

log = logging.getLogger(__name__)

VECTOR_NAME = "clap"
WRITE_BATCH = 512  # points per update call: bounds request size and peak memory
SCROLL_PAGE = 4096
QUANTIZATIONS = ("none", "int8", "binary")


@dataclass(frozen=True)
class AnnParams:
    """How the index finds neighbours. `m`, `ef_construct` and `quantization` shape the HNSW
    graph and the stored vectors (they apply when segments are built, so changing them on an
    existing index takes effect at the next optimize); the rest apply per query.

    Defaults are the measured choice for Foley (see README, "Vector index at scale")."""

    m: int = 32
    ef_construct: int = 200
    hnsw_ef: int = 128  # beam width of a query; at least 4 * k
    quantization: str = "int8"  # a 4x smaller copy of the vectors walks the graph
    oversampling: float = 2.0  # with quantization: candidates rescored = k * oversampling
    # At or below this many points every query is an exact scan: it never misses, and the
    # scan is as fast as the graph walk.
    exact_below: int = 20_000

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}"
            )
        if min(self.m, self.ef_construct, self.hnsw_ef) < 1 or self.exact_below < 0:
            raise ValueError("m, ef_construct and hnsw_ef must be positive, exact_below >= 0")
        if self.oversampling < 1.0:
            raise ValueError(f"oversampling must be at least 1, got {self.oversampling}")

    def exact(self, count: int) -> bool:
        return count <= self.exact_below

    def ef(self, k: int) -> int:
        return max(self.hnsw_ef, 4 * k, int(np.ceil(k * self.oversampling)))


# Qdrant's own rule inside one segment (in KB of vectors): plain scan below it. Foley decides
# exact search itself from the point count (`AnnParams.exact_below`); this is Qdrant's default.
FULL_SCAN_KB = 10_000
INT8_QUANTILE = 0.99  # clip the 1 % most extreme components so int8 keeps resolution

PAYLOAD_FIELDS = {"duration": "float", "source": "keyword", "tags": "keyword"}


class VectorIndexError(Exception):
    """The vector index cannot be opened or used as asked."""


class IndexLockedError(VectorIndexError):
    """Another process holds the embedded index open."""


@dataclass(frozen=True)
class IndexedPoint:
    """One sound in the index. Payload keys: duration (s), source, tags."""

    id: int
    vector: np.ndarray
    payload: dict[str, Any]


@dataclass(frozen=True)
class SearchHit:
    id: int
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search; every set field must match and every tag must be present."""

    min_duration: float | None = None
    max_duration: float | None = None
    source: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    """One search of a batch (`search_many`): a vector, how many hits, a filter."""

    vector: np.ndarray
    k: int
    flt: SearchFilter | None = None


class VectorIndex(Protocol):
    dim: int

    def upsert(self, points: Sequence[IndexedPoint]) -> None: ...
    def delete(self, ids: Sequence[int]) -> None: ...
    def search(
        self,
        vector: np.ndarray,
        k: int,
        flt: SearchFilter | None = None,
        *,
        with_payload: bool = True,
    ) -> list[SearchHit]: ...
    def search_many(self, queries: Sequence[Query]) -> list[list[SearchHit]]: ...
    def count(self) -> int: ...
    def ids(self) -> set[int]: ...
    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]: ...
    def clear(self) -> None: ...
    def optimize(self) -> None: ...
    def close(self) -> None: ...


def open_vector_index(settings: Settings, dim: int) -> VectorIndex:
    """The index the settings name: a Qdrant server if `qdrant_url` is set, else embedded."""
    if settings.qdrant_url:
        return ServerVectorIndex(
            settings.qdrant_url,
            settings.qdrant_collection,
            dim,
            settings.qdrant_api_key,
            ann_params(settings),
        )
    return EdgeVectorIndex(settings.index_path, dim, ann_params(settings))


def ann_params(settings: Settings) -> AnnParams:
    return AnnParams(
        m=settings.index_hnsw_m,
        ef_construct=settings.index_hnsw_ef_construct,
        hnsw_ef=settings.index_hnsw_ef,
        quantization=settings.index_quantization,
        oversampling=settings.index_oversampling,
        exact_below=settings.index_exact_below,
    )


def _vector_list(vector: np.ndarray, dim: int) -> list[float]:
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dim,):
        raise VectorIndexError(f"expected a vector of shape ({dim},), got {array.shape}")
    if not np.isfinite(array).all():
        raise VectorIndexError("vector contains NaN or infinite values")
    return array.tolist()


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _batches(items: Sequence[Any], size: int = WRITE_BATCH) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _conditions(
    flt: SearchFilter | None, field: Callable[..., Any], match: Any, rng: Any
) -> list[Any]:
    """Filter conditions built from either back end's model classes (same keyword names)."""
    if flt is None:
        return []
    conditions: list[Any] = []
    if flt.min_duration is not None or flt.max_duration is not None:
        duration = rng(gte=flt.min_duration, lte=flt.max_duration)
        conditions.append(field(key="duration", range=duration))
    if flt.source is not None:
        conditions.append(field(key="source", match=match(value=flt.source)))
    # A keyword match on a list field matches when any element equals the value, so one
    # condition per tag under `must` requires all of them.
    conditions.extend(field(key="tags", match=match(value=tag)) for tag in flt.tags)
    return conditions


def _stored_vector(vector: Any) -> np.ndarray:
    named = vector[VECTOR_NAME] if isinstance(vector, dict) else vector
    return np.asarray(named, dtype=np.float32)


def _edge_quantization(kind: str) -> Any:
    if kind == "int8":
        return edge.ScalarQuantizationConfig(type=edge.ScalarType.Int8, quantile=INT8_QUANTILE)
    if kind == "binary":
        return edge.BinaryQuantizationConfig()
    return None


def _edge_rescoring(ann: AnnParams) -> edge.QuantizationSearchParams:
    if ann.quantization == "none":
        # An index built with quantization keeps it when reopened without; don't use it.
        return edge.QuantizationSearchParams(ignore=True)
    # Quantized scores pick the candidates; the original vectors order them.
    return edge.QuantizationSearchParams(rescore=True, oversampling=ann.oversampling)


class EdgeVectorIndex:
    """A Qdrant Edge shard in a folder, owned by this process (the shard locks its WAL)."""

    def __init__(self, path: Path, dim: int, ann: AnnParams | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        # Search-time fields may be replaced on an open index; build-time ones apply to
        # segments built after the shard is (re)opened with them.
        self.ann = ann or AnnParams()
        self._handle: edge.EdgeShard | None = self._open()
        self._count: int | None = None  # cached for choosing exact search; reset on writes

    def _config(self) -> edge.EdgeConfig:
        params = edge.EdgeVectorParams(size=self.dim, distance=edge.Distance.Cosine)
        hnsw = edge.HnswIndexConfig(
            m=self.ann.m, ef_construct=self.ann.ef_construct, full_scan_threshold=FULL_SCAN_KB
        )
        return edge.EdgeConfig(
            vectors={VECTOR_NAME: params},
            hnsw_config=hnsw,
            quantization_config=_edge_quantization(self.ann.quantization),
        )

    def _open(self) -> edge.EdgeShard:
        exists = (self.path / "edge_config.json").exists()
        if exists:
            self._check_stored_dim()
        try:
            if exists:
                shard = edge.EdgeShard.load(str(self.path), self._config())
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                shard = edge.EdgeShard.create(str(self.path), self._config())
        except Exception as exc:  # the bindings raise bare Exception
            if "WouldBlock" in str(exc):
                raise IndexLockedError(
                    f"the vector index at {self.path} is in use by another Foley process; "
                    "stop it or point FOLEY_DATA_DIR elsewhere"
                ) from exc
            raise VectorIndexError(f"cannot open the vector index at {self.path}: {exc}") from exc
        self._ensure_payload_indexes(shard)
        log.info("vector index at %s: %d points", self.path, shard.count(edge.CountRequest()))
        return shard

    def _check_stored_dim(self) -> None:
        config = json.loads((self.path / "edge_config.json").read_text())
        stored = config.get("vectors", {}).get(VECTOR_NAME, {}).get("size")
        if stored is not None and stored != self.dim:
            raise VectorIndexError(
                f"the vector index at {self.path} holds {stored}-d vectors but the embedding "
                f"model gives {self.dim}-d; move that folder aside and rebuild the index"
            )

    @staticmethod
    def _ensure_payload_indexes(shard: edge.EdgeShard) -> None:
        existing = shard.info().payload_schema
        for field, kind in PAYLOAD_FIELDS.items():
            if field not in existing:
                schema = getattr(edge.PayloadSchemaType, kind.capitalize())
                shard.update(edge.UpdateOperation.create_field_index(field, schema))
        shard.flush()

    @property
    def _shard(self) -> edge.EdgeShard:
        if self._handle is None:
            raise VectorIndexError(f"the vector index at {self.path} is closed")
        return self._handle

    def upsert(self, points: Sequence[IndexedPoint]) -> None:
        for batch in _batches(points):
            edge_points = [
                edge.Point(
                    int(p.id), {VECTOR_NAME: _vector_list(p.vector, self.dim)}, dict(p.payload)
                )
                for p in batch
            ]
            self._shard.update(edge.UpdateOperation.upsert_points(edge_points))
        self._count = None
        # The WAL makes writes recoverable; flushing makes them durable before we acknowledge.
        self._shard.flush()

    def delete(self, ids: Sequence[int]) -> None:
        for batch in _batches(ids):
            self._shard.update(edge.UpdateOperation.delete_points([int(i) for i in batch]))
        self._count = None
        self._shard.flush()

    def search(
        self,
        vector: np.ndarray,
        k: int,
        flt: SearchFilter | None = None,
        *,
        with_payload: bool = True,
    ) -> list[SearchHit]:
        """The k nearest points, best first. `with_payload=False` (a search that reads the
        catalog anyway) leaves each hit's payload empty: converting 64 payloads into Python
        dicts cost more than the query."""
        points = self._shard.query(self._request(Query(vector, k, flt), with_payload))
        if not with_payload:
            return [SearchHit(int(p.id), float(p.score), {}) for p in points]
        return [SearchHit(int(p.id), float(p.score), p.payload or {}) for p in points]

    def search_many(self, queries: Sequence[Query]) -> list[list[SearchHit]]:
        """Several searches in one call, hits without payloads: Qdrant plans them as one batch
        (one pass over the segments), 0.62 instead of 0.92 ms a query for 16 exact searches
        over 10,000 sounds."""
        if not queries:
            return []
        batch = edge.QueryBatchRequest([self._request(q, False) for q in queries])
        return [
            [SearchHit(int(p.id), float(p.score), {}) for p in points]
            for points in self._shard.query_batch(batch)
        ]

    def _request(self, query: Query, with_payload: bool) -> edge.QueryRequest:
        _check_k(query.k)
        conditions = _conditions(query.flt, edge.FieldCondition, edge.MatchValue, edge.RangeFloat)
        if self._count is None:
            self._count = self.count()
        return edge.QueryRequest(
            limit=query.k,
            params=edge.SearchParams(
                hnsw_ef=self.ann.ef(query.k),
                exact=self.ann.exact(self._count),
                quantization=_edge_rescoring(self.ann),
            ),
            query=edge.Query.Nearest(_vector_list(query.vector, self.dim), using=VECTOR_NAME),
            filter=edge.Filter(must=conditions) if conditions else None,
            with_payload=with_payload,
            with_vector=False,
        )

    def count(self) -> int:
        return int(self._shard.count(edge.CountRequest()))

    def ids(self) -> set[int]:
        found: set[int] = set()
        offset = None
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, with_payload=False, with_vector=False
            )
            records, offset = self._shard.scroll(request)
            found.update(int(r.id) for r in records)
            if offset is None:
                return found

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        records = self._shard.retrieve(
            [int(i) for i in ids], with_payload=False, with_vector=[VECTOR_NAME]
        )
        return {int(r.id): _stored_vector(r.vector) for r in records}

    def clear(self) -> None:
        # An empty filter matches every point; the next optimize() vacuums the segments.
        self._shard.update(edge.UpdateOperation.delete_points_by_filter(edge.Filter()))
        self._count = None
        self._shard.flush()

    def optimize(self) -> None:
        """Build the HNSW graph and merge segments; blocks, minutes at 100k points."""
        self._shard.optimize()
        self._shard.flush()

    def close(self) -> None:
        if self._handle is None:
            return
        self._handle.flush()
        self._handle.close()
        self._handle = None


class ServerVectorIndex:
    """A collection on a Qdrant server (or qdrant-client's in-memory mode for ":memory:")."""

    def __init__(
        self,
        location: str,
        collection: str,
        dim: int,
        api_key: str | None = None,
        ann: AnnParams | None = None,
    ) -> None:
        self.location = location
        self.collection = collection
        self.dim = dim
        self.ann = ann or AnnParams()
        self._connection: QdrantClient | None = _connect(location, api_key)
        try:
            self._ensure_collection()
        except VectorIndexError:
            self.close()
            raise
        except Exception as exc:  # transport errors differ between REST, gRPC and local mode
            self.close()
            raise VectorIndexError(f"cannot use Qdrant at {location}: {exc}") from exc

    @property
    def _client(self) -> QdrantClient:
        if self._connection is None:
            raise VectorIndexError(f"the connection to {self.location} is closed")
        return self._connection

    def _ensure_collection(self) -> None:
        from qdrant_client import models

        if self._client.collection_exists(self.collection):
            self._check_stored_dim()
        else:
            params = models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
            self._client.create_collection(
                self.collection,
                vectors_config={VECTOR_NAME: params},
                hnsw_config=models.HnswConfigDiff(m=self.ann.m, ef_construct=self.ann.ef_construct),
                quantization_config=_server_quantization(self.ann.quantization),
            )
        with warnings.catch_warnings():
            # In-memory mode (tests) has no payload indexes and warns about it.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field, kind in PAYLOAD_FIELDS.items():
                schema = models.PayloadSchemaType(kind)
                self._client.create_payload_index(self.collection, field, schema, wait=True)

    def _check_stored_dim(self) -> None:
        vectors = self._client.get_collection(self.collection).config.params.vectors
        params = vectors.get(VECTOR_NAME) if isinstance(vectors, dict) else None
        if params is None or params.size != self.dim:
            stored = "no 'clap' vector" if params is None else f"{params.size}-d vectors"
            raise VectorIndexError(
                f"collection {self.collection!r} at {self.location} has {stored} but the "
                f"embedding model gives {self.dim}-d; use another FOLEY_QDRANT_COLLECTION"
            )

    def upsert(self, points: Sequence[IndexedPoint]) -> None:
        from qdrant_client import models

        for batch in _batches(points):
            structs = [
                models.PointStruct(
                    id=int(p.id),
                    vector={VECTOR_NAME: _vector_list(p.vector, self.dim)},
                    payload=dict(p.payload),
                )
                for p in batch
            ]
            self._client.upsert(self.collection, points=structs, wait=True)

    def delete(self, ids: Sequence[int]) -> None:
        from qdrant_client import models

        for batch in _batches(ids):
            selector = models.PointIdsList(points=[int(i) for i in batch])
            self._client.delete(self.collection, points_selector=selector, wait=True)

    def search(
        self,
        vector: np.ndarray,
        k: int,
        flt: SearchFilter | None = None,
        *,
        with_payload: bool = True,
    ) -> list[SearchHit]:
        request = self._request(Query(vector, k, flt), with_payload)
        response = self._client.query_points(
            self.collection,
            query=request.query,
            using=request.using,
            limit=request.limit,
            query_filter=request.filter,
            search_params=request.params,
            with_payload=with_payload,
        )
        return [SearchHit(int(p.id), float(p.score), p.payload or {}) for p in response.points]

    def search_many(self, queries: Sequence[Query]) -> list[list[SearchHit]]:
        """Several searches in one request, hits without payloads."""
        if not queries:
            return []
        responses = self._client.query_batch_points(
            self.collection, requests=[self._request(q, False) for q in queries]
        )
        return [
            [SearchHit(int(p.id), float(p.score), {}) for p in response.points]
            for response in responses
        ]

    def _request(self, query: Query, with_payload: bool) -> Any:
        from qdrant_client import models

        _check_k(query.k)
        conditions = _conditions(query.flt, models.FieldCondition, models.MatchValue, models.Range)
        return models.QueryRequest(
            query=_vector_list(query.vector, self.dim),
            using=VECTOR_NAME,
            limit=query.k,
            filter=models.Filter(must=conditions) if conditions else None,
            # The server decides exact scans itself (small segments); Foley sets the beam.
            params=models.SearchParams(
                hnsw_ef=self.ann.ef(query.k), quantization=_server_rescoring(self.ann)
            ),
            with_payload=with_payload,
        )

    def count(self) -> int:
        return self._client.count(self.collection, exact=True).count

    def ids(self) -> set[int]:
        found: set[int] = set()
        offset = None
        while True:
            records, offset = self._client.scroll(
                self.collection, limit=SCROLL_PAGE, offset=offset, with_payload=False
            )
            found.update(int(r.id) for r in records)
            if offset is None:
                return found

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        records = self._client.retrieve(
            self.collection, [int(i) for i in ids], with_payload=False, with_vectors=[VECTOR_NAME]
        )
        return {int(r.id): _stored_vector(r.vector) for r in records}

    def clear(self) -> None:
        from qdrant_client import models

        everything = models.FilterSelector(filter=models.Filter())
        self._client.delete(self.collection, points_selector=everything, wait=True)

    def optimize(self) -> None:
        """Nothing to do: the server builds its HNSW graph in the background."""

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _server_quantization(kind: str) -> Any:
    from qdrant_client import models

    if kind == "int8":
        scalar = models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=INT8_QUANTILE
        )
        return models.ScalarQuantization(scalar=scalar)
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig())
    return None


def _server_rescoring(ann: AnnParams) -> Any:
    from qdrant_client import models

    if ann.quantization == "none":
        return None
    return models.QuantizationSearchParams(rescore=True, oversampling=ann.oversampling)


def _connect(location: str, api_key: str | None) -> QdrantClient:
    from qdrant_client import QdrantClient

    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if not location.startswith(("http://", "https://")):
        raise VectorIndexError(f"FOLEY_QDRANT_URL must be an http(s):// URL, got {location!r}")
    return QdrantClient(url=location, api_key=api_key)
