"""`foley eval rerank`: CLAP alone against CLAP + DiffATR on the same candidate lists.

For every caption of a split, the candidates are the top N clips of that split by CLAP cosine
(text -> audio). CLAP alone ranks them by cosine; CLAP + DiffATR by cosine + alpha x generated
probability. A caption's one relevant clip is the clip it describes; a caption whose clip is
not among the N candidates counts as a miss for both. Class P@10 is the share of the top 10
that share a label with the caption's clip. Ablations in the same run: DDIM steps, alpha, and
N (the number of candidates reranked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from generative.clap.expansion import QueryExpansion
    from generative.clap.features import CorpusFeatures
    from generative.diffatr.pipeline import DiffATR

log = logging.getLogger(__name__)

METRICS = ("R@1", "R@5", "R@10", "mAP@10", "class_P@10")
EVAL_SPLITS = ("test", "ood")
STEP_GRID = (1, 2, 5, 10, 20, 50)
ALPHA_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
N_GRID = (16, 32, 64, 128)
# The steps and N ablations (and the choice of steps on val) run on this many captions of a
# split, drawn with a fixed seed: 50 DDIM steps over every caption would take most of an hour.
ABLATION_CAPTIONS = 1000


@dataclass
class CandidateLists:
    """One split's queries and their top-N candidates by CLAP."""

    text: np.ndarray  # (C, D) caption features
    audio: np.ndarray  # (M, D) the split's clip features
    target: np.ndarray  # (C,) index into `audio` of each caption's clip
    labels: list[set[str]]  # (M,) each clip's labels
    index: np.ndarray  # (C, N) candidate clip indices, best CLAP score first
    clap: np.ndarray  # (C, N) their CLAP cosines

    def top(self, n: int) -> CandidateLists:
        return CandidateLists(
            self.text, self.audio, self.target, self.labels, self.index[:, :n], self.clap[:, :n]
        )

    def sample(self, count: int, seed: int = 0) -> CandidateLists:
        """At most `count` of the captions, drawn with a fixed seed."""
        if len(self.text) <= count:
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self.text), count, replace=False))
        return CandidateLists(
            self.text[rows], self.audio, self.target[rows], self.labels, self.index[rows],
            self.clap[rows],
        )  # fmt: skip


def candidate_lists(
    text: np.ndarray,
    audio: np.ndarray,
    target: np.ndarray,
    labels: list[set[str]],
    n: int,
    chunk: int = 2048,
) -> CandidateLists:
    """Top-n clips per caption by cosine, computed in chunks of captions to bound memory."""
    n = min(n, len(audio))
    index = np.zeros((len(text), n), dtype=np.int64)
    for start in range(0, len(text), chunk):
        sims = text[start : start + chunk] @ audio.T  # (c, D) @ (D, M) -> (c, M)
        top = np.argpartition(-sims, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        index[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    clap = np.einsum("cd,cnd->cn", text, audio[index])  # (C, D) . (C, N, D) -> (C, N)
    return CandidateLists(text, audio, target, labels, index, clap.astype(np.float64))


def split_lists(features: CorpusFeatures, split: str, n: int) -> CandidateLists:
    clips = np.flatnonzero(features.splits == split)
    if clips.size == 0:
        raise ValueError(f"the corpus has no {split} clips")
    local = np.full(len(features.splits), -1)
    local[clips] = np.arange(len(clips))
    captions = np.flatnonzero(np.isin(features.caption_clip, clips))
    return candidate_lists(
        features.text[captions],
        features.audio[clips],
        local[features.caption_clip[captions]],
        [features.labels[c] for c in clips],
        n,
    )


def generate_probs(
    reranker: DiffATR, lists: CandidateLists, steps: int, batch: int = 256
) -> np.ndarray:
    """DiffATR's generated distribution over each caption's candidates: (C, N)."""
    import torch

    out = np.zeros(lists.index.shape, dtype=np.float64)
    generator = torch.Generator().manual_seed(reranker.config.seed)
    for start in range(0, len(lists.text), batch):
        query = torch.from_numpy(lists.text[start : start + batch])  # (b, D)
        audio = torch.from_numpy(lists.audio[lists.index[start : start + batch]])  # (b, N, D)
        probs = reranker.sampler(reranker.model, query, audio, steps, generator)
        out[start : start + batch] = probs.double().numpy()
    return out


def rank_metrics(lists: CandidateLists, scores: np.ndarray) -> dict[str, float]:
    """Metrics of ranking each caption's candidates by `scores` (C, N), highest first."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(lists.index, order, axis=1)  # (C, N) clip indices
    hit = ranked == lists.target[:, None]  # (C, N)
    found = hit.any(axis=1)
    rank = np.where(found, hit.argmax(axis=1), len(lists.audio))
    out = {f"R@{k}": float(np.mean(rank < k)) for k in (1, 5, 10)}
    out["mAP@10"] = float(np.mean(np.where(rank < 10, 1.0 / (rank + 1), 0.0)))
    top = ranked[:, :10]
    shares = [
        np.mean([bool(lists.labels[lists.target[q]] & lists.labels[j]) for j in row])
        for q, row in enumerate(top)
    ]
    out["class_P@10"] = float(np.mean(shares))
    return out


def compare(lists: CandidateLists, probs: np.ndarray, alpha: float) -> dict[str, dict[str, float]]:
    return {
        "clap": rank_metrics(lists, lists.clap),
        "diffatr": rank_metrics(lists, lists.clap + alpha * probs),
    }


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Best R@1; ties go to mAP@10, then fewer steps, then smaller alpha."""
    return max(rows, key=lambda r: (r["R@1"], r["mAP@10"], -r["steps"], -r["alpha"]))


def tune(
    reranker: DiffATR, lists: CandidateLists, steps_grid: Sequence[int], alpha_grid: Sequence[float]
) -> tuple[int, float, list[dict[str, Any]]]:
    """DDIM steps chosen on a sample of the captions (every alpha tried), then alpha on all of
    them at those steps; returns both and every row tried (`captions` says which set)."""
    sample, rows = lists.sample(ABLATION_CAPTIONS), []
    for steps in steps_grid:
        probs = generate_probs(reranker, sample, steps)
        for alpha in alpha_grid:
            metrics = rank_metrics(sample, sample.clap + alpha * probs)
            rows.append({"captions": len(sample.text), "steps": steps, "alpha": alpha, **metrics})
    steps = int(_best(rows)["steps"])
    probs = generate_probs(reranker, lists, steps)
    full = [
        {"captions": len(lists.text), "steps": steps, "alpha": alpha,
         **rank_metrics(lists, lists.clap + alpha * probs)}
        for alpha in alpha_grid
    ]  # fmt: skip
    return steps, float(_best(full)["alpha"]), rows + full


def expanded_comparison(
    lists: CandidateLists, reranker: DiffATR, expansion: QueryExpansion
) -> dict[str, dict[str, float]]:
    """The captions asked as search asks them (query expansion): candidates from the expanded
    vectors, ranked by CLAP alone and by CLAP + DiffATR reading the expanded or the plain
    query vector."""
    config = reranker.config
    moved = candidate_lists(expansion.expand(lists.text), lists.audio, lists.target,
                            lists.labels, lists.index.shape[1])  # fmt: skip
    plain = replace(moved, text=lists.text)
    out = {"clap": rank_metrics(moved, moved.clap)}
    for name, query in (("diffatr", moved), ("diffatr, plain query", plain)):
        probs = generate_probs(reranker, query, config.sample_steps)
        out[name] = rank_metrics(moved, moved.clap + config.alpha * probs)
    return out


def evaluate_rerank(
    features: CorpusFeatures, reranker: DiffATR, splits: Sequence[str] = EVAL_SPLITS,
    expansion: QueryExpansion | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Main table and ablations for each split, at the checkpoint's alpha, steps and top N;
    with `expansion`, the main table again with the captions expanded as search expands
    queries."""
    config = reranker.config
    report: dict[str, Any] = {
        "alpha": config.alpha,
        "steps": config.sample_steps,
        "top_n": config.top_n,
        "splits": {},
    }
    for split in splits:
        started = time.perf_counter()
        full = split_lists(features, split, max(N_GRID))
        lists = full.top(config.top_n)
        probs = generate_probs(reranker, lists, config.sample_steps)
        sample = full.sample(ABLATION_CAPTIONS)
        few = sample.top(config.top_n)
        result: dict[str, Any] = {
            "captions": len(lists.text),
            "clips": len(lists.audio),
            "ablation_captions": len(sample.text),
            "main": compare(lists, probs, config.alpha),
            "alpha": {a: rank_metrics(lists, lists.clap + a * probs) for a in ALPHA_GRID},
            "steps": {
                s: rank_metrics(few, few.clap + config.alpha * generate_probs(reranker, few, s))
                for s in STEP_GRID
            },
            "top_n": {},
        }
        if expansion is not None:
            result["expanded"] = expanded_comparison(lists, reranker, expansion)
        for n in N_GRID:
            sub = sample.top(n)
            result["top_n"][n] = compare(sub, generate_probs(reranker, sub, config.sample_steps),
                                         config.alpha)  # fmt: skip
        result["seconds"] = round(time.perf_counter() - started, 1)
        log.info("evaluated %s in %.0f s: %s", split, result["seconds"], result["main"])
        report["splits"][split] = result
    return report


def _row(name: str, metrics: dict[str, float]) -> str:
    return f"| {name} | " + " | ".join(f"{100 * metrics[m]:.2f}" for m in METRICS) + " |"


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables: main comparison, then the steps, alpha and N ablations (in %)."""
    head = "| | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS)
    cfg = f"alpha {report['alpha']}, {report['steps']} DDIM steps, top N {report['top_n']}"
    lines = [f"Text -> audio retrieval, candidates = CLAP top N ({cfg}); numbers in %.", ""]
    for split, result in report["splits"].items():
        lines += [f"**{split}** ({result['captions']} captions, {result['clips']} clips)", "", head]
        lines.append(_row("CLAP", result["main"]["clap"]))
        lines.append(_row("CLAP + DiffATR", result["main"]["diffatr"]))
        if "expanded" in result:
            moved = result["expanded"]
            lines.append(_row("CLAP, expanded queries", moved["clap"]))
            lines.append(_row("CLAP + DiffATR, expanded queries", moved["diffatr"]))
            lines.append(_row("CLAP + DiffATR, expanded candidates, plain query to DiffATR",
                              moved["diffatr, plain query"]))  # fmt: skip
        few = f"{result['ablation_captions']} captions drawn with seed 0"
        lines += ["", f"{split}, ablation: alpha ({report['steps']} steps, all captions)", ""]
        lines += [head] + [_row(f"alpha {a}", m) for a, m in result["alpha"].items()]
        lines += ["", f"{split}, ablation: DDIM steps (alpha {report['alpha']}; {few})", ""]
        lines += [head] + [_row(f"{s} steps", m) for s, m in result["steps"].items()]
        lines += ["", f"{split}, ablation: candidates reranked, N ({few})", "", head]
        for n, pair in result["top_n"].items():
            lines += [_row(f"N={n} CLAP", pair["clap"]), _row(f"N={n} +DiffATR", pair["diffatr"])]
        lines.append("")
    return "\n".join(lines)


def run_eval(
    corpus_dir: Path, checkpoint: Path, clap_checkpoint: Path, threads: int = 2
) -> dict[str, Any]:
    """Load the features (cached) and the reranker, and evaluate on test and ood."""
    import torch

    from generative.clap.features import corpus_features
    from generative.clap.load import load_clap
    from generative.diffatr.pipeline import load_diffatr

    torch.set_num_threads(threads)
    clap = load_clap(clap_checkpoint)
    reranker = load_diffatr(checkpoint)
    if reranker.config.clap_model_id not in (None, clap.model_id):
        log.warning(
            "DiffATR %s was trained on %s features, evaluating with %s",
            checkpoint, reranker.config.clap_model_id, clap.model_id,
        )  # fmt: skip
    # No train clip is needed: any cached features of the other splits will do.
    features = corpus_features(corpus_dir, clap, train_clips=0)
    return evaluate_rerank(features, reranker, expansion=clap.expansion)
