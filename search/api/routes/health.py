"""Is this Foley healthy: catalog, index and model state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import func, select, text

from core.catalog import Sound
from index_builder.captions import captioner_status
from search.api.deps import FoleyDep
from search.rerank import text_reranker
from search.service import Foley

router = APIRouter(prefix="/health", tags=["health"])


class Health(BaseModel):
    status: str
    catalog: dict[str, object]
    index: dict[str, object]
    model: dict[str, object]
    reranker: dict[str, object]
    captioner: dict[str, object]
    search: dict[str, object]


def _search_state(request: Request, foley: Foley) -> dict[str, object]:
    """The search queue and its micro-batching: how full, how many refused, batch sizes."""
    state: dict[str, object] = dict(request.app.state.search_queue.state())
    searches = foley.searches
    state["batching"] = searches is not None
    if searches is not None:
        state.update(batches=searches.batcher.batches, batched_calls=searches.batcher.items)
    return state


def _check(foley: Foley, search: dict[str, object]) -> Health:
    status = "ok"
    catalog: dict[str, object] = {"backend": foley.catalog.engine.dialect.name}
    try:
        with foley.catalog.session() as session:
            session.execute(text("SELECT 1"))
            catalog["sounds"] = session.scalar(select(func.count()).select_from(Sound)) or 0
        catalog["ok"] = True
    except Exception as exc:  # health reports every failure rather than raising
        catalog.update(ok=False, error=str(exc))
        status = "degraded"
    index: dict[str, object] = {"backend": type(foley.index).__name__}
    try:
        with foley.lock:
            index["points"] = foley.index.count()
        index["pending_changes"] = foley.syncer.pending()
        index["model_id"] = foley.syncer.indexed_model()
        index["ok"] = True
    except Exception as exc:
        index.update(ok=False, error=str(exc))
        status = "degraded"
    model = {
        "model_id": foley.clap.model_id,
        "dim": foley.clap.dim,
        "sample_rate": foley.clap.sample_rate,
        "loaded": True,
    }
    return Health(
        status=status,
        catalog=catalog,
        index=index,
        model=model,
        reranker=_reranker(foley),
        captioner=captioner_status(foley.settings),
        search=search,
    )


def _reranker(foley: Foley) -> dict[str, object]:
    """Whether text searches are reranked; a missing reranker is not a failure."""
    reranker, reason = text_reranker(foley)
    state: dict[str, object] = {
        "loaded": reranker is not None,
        "status": reason,
        "checkpoint": str(foley.settings.diffatr_checkpoint),
    }
    if reranker is not None:
        config = reranker.config
        state.update(
            model_id=reranker.model_id,
            alpha=config.alpha,
            steps=config.sample_steps,
            top_n=config.top_n,
        )
    return state


@router.get("", response_model=Health)
async def health(request: Request, foley: FoleyDep) -> Health:
    """Report catalog, index, model and search-queue state."""
    return await run_in_threadpool(_check, foley, _search_state(request, foley))
