"""DiffATR: a tiny random denoiser's shapes and determinism, the sampler, checkpoints,
negative mining, a short training run and the ranking metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generative.diffatr.model import DiffATRConfig, build_denoiser, save_diffatr  # noqa: E402
from generative.diffatr.pipeline import DiffATR, load_diffatr  # noqa: E402
from generative.diffatr.sampler import DiffATRSampler  # noqa: E402


def tiny_config(**overrides: object) -> DiffATRConfig:
    values: dict[str, object] = dict(feature_dim=8, width=8, heads=2, train_timesteps=20)
    values.update(overrides)
    return DiffATRConfig(**values)  # type: ignore[arg-type]


def unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_denoiser_shapes_and_determinism() -> None:
    config = tiny_config()
    rng = np.random.default_rng(0)
    query, audio = torch.from_numpy(unit(rng, 3, 8)), torch.from_numpy(unit(rng, 3, 5, 8))
    noisy, t = torch.randn(3, 5), torch.tensor([0, 7, 19])
    first = build_denoiser(config, seed=1).eval()(noisy, t, query, audio)
    again = build_denoiser(config, seed=1).eval()(noisy, t, query, audio)
    other = build_denoiser(config, seed=2).eval()(noisy, t, query, audio)
    assert first.shape == (3, 5)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    # A scalar timestep is broadcast over the batch.
    scalar = build_denoiser(config, seed=1).eval()(noisy, torch.tensor(7), query, audio)
    assert torch.allclose(scalar[1], first[1], atol=1e-6)


@pytest.mark.parametrize("product_input", [False, True])
def test_denoiser_is_permutation_equivariant(product_input: bool) -> None:
    """Candidates carry no position: shuffling them shuffles the logits the same way."""
    model = build_denoiser(tiny_config(product_input=product_input), seed=0).eval()
    rng = np.random.default_rng(1)
    query, audio = torch.from_numpy(unit(rng, 1, 8)), torch.from_numpy(unit(rng, 1, 6, 8))
    noisy, perm = torch.randn(1, 6), torch.tensor([3, 0, 5, 1, 4, 2])
    logits = model(noisy, torch.tensor(5), query, audio)
    shuffled = model(noisy[:, perm], torch.tensor(5), query, audio[:, perm])
    assert torch.allclose(logits[:, perm], shuffled, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_sampler_returns_a_distribution(steps: int) -> None:
    config = tiny_config()
    model = build_denoiser(config).eval()
    rng = np.random.default_rng(2)
    query, audio = torch.from_numpy(unit(rng, 4, 8)), torch.from_numpy(unit(rng, 4, 7, 8))
    probs = DiffATRSampler(config)(model, query, audio, steps, torch.Generator().manual_seed(0))
    assert probs.shape == (4, 7)
    assert bool((probs >= 0).all())
    assert torch.allclose(probs.sum(dim=1), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 5, 20, 50])
def test_ddim_update_is_the_schedulers_step(steps: int) -> None:
    """The sampler's two multiply-adds per step equal diffusers' DDIM `step` (eta 0)."""
    sampler = DiffATRSampler(DiffATRConfig())
    scheduler = sampler.scheduler(steps)
    generator = torch.Generator().manual_seed(steps)
    x = torch.randn(3, 8, generator=generator)
    for t, (keep, mix) in zip(scheduler.timesteps, sampler.ddim(steps), strict=True):
        clean = torch.rand(3, 8, generator=generator) * 2 - 1
        expected = scheduler.step(clean, t, x, eta=0.0).prev_sample
        assert torch.allclose(keep * x + mix * clean, expected, atol=1e-5)
        x = expected


def test_sampler_rejects_bad_input() -> None:
    config = tiny_config()
    sampler, model = DiffATRSampler(config), build_denoiser(config)
    with pytest.raises(ValueError, match="steps"):
        sampler(model, torch.zeros(1, 8), torch.zeros(1, 3, 8), 0)
    with pytest.raises(ValueError, match="query"):
        sampler(model, torch.zeros(8), torch.zeros(1, 3, 8), 1)


def test_generate_is_deterministic_and_checkpoint_round_trips(tmp_path: Path) -> None:
    config = tiny_config(alpha=0.3, sample_steps=2, clap_model_id="clap-compact:test")
    reranker = DiffATR(build_denoiser(config, seed=3), config)
    rng = np.random.default_rng(3)
    query, audio = unit(rng, 8), unit(rng, 10, 8)
    probs = reranker.generate(query, audio)
    assert np.array_equal(probs, reranker.generate(query, audio))
    save_diffatr(reranker.model, config, tmp_path / "ckpt", card="# tiny\n")
    loaded = load_diffatr(tmp_path / "ckpt")
    assert loaded.config == config
    assert loaded.model_id.startswith("diffatr:")
    assert np.allclose(loaded.generate(query, audio), probs, atol=2e-3)  # fp16 weights
    clap = np.linspace(0.5, 0.1, 10)
    assert np.allclose(loaded.scores(clap, probs), clap + 0.3 * probs)


def test_load_reports_a_broken_checkpoint(tmp_path: Path) -> None:
    from generative.diffatr.pipeline import DiffATRLoadError

    with pytest.raises(DiffATRLoadError, match="needs"):
        load_diffatr(tmp_path)
    config = tiny_config()
    save_diffatr(build_denoiser(config), config, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DiffATRLoadError, match="cannot load"):
        load_diffatr(tmp_path)


def synthetic_features(clips: int = 60, captions: int = 3, dim: int = 8, seed: int = 0):  # noqa: ANN201
    """Clips in 6 classes; each caption is its clip's vector plus noise."""
    from generative.clap.features import CorpusFeatures

    rng = np.random.default_rng(seed)
    classes = unit(rng, 6, dim)
    label = np.arange(clips) % 6
    audio = classes[label] + 0.6 * unit(rng, clips, dim)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    owner = np.repeat(np.arange(clips), captions)
    text = audio[owner] + 0.5 * unit(rng, len(owner), dim)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    splits = np.asarray(["train", "train", "train", "val", "test", "ood"])[np.arange(clips) % 6]
    return CorpusFeatures(
        model_id="synthetic",
        clip_ids=np.asarray([f"c{i}" for i in range(clips)]),
        splits=splits[rng.permutation(clips)],
        labels=[{f"class{c}"} for c in label],
        audio=audio.astype(np.float32),
        text=text.astype(np.float32),
        caption_clip=owner,
    )


def test_hard_negatives_leave_the_positive_out() -> None:
    from generative.diffatr.train import hard_negatives

    features = synthetic_features()
    owner = features.caption_clip
    negatives, reachable = hard_negatives(features.text, features.audio, owner, pool=2)
    assert negatives.shape == (len(features.text), 1)
    assert not (negatives == owner[:, None]).any()
    sims = np.einsum("cd,ckd->ck", features.text, features.audio[negatives])
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # hardest first
    all_sims = features.text @ features.audio.T
    rank = (all_sims > all_sims[np.arange(len(owner)), owner][:, None]).sum(axis=1)
    assert np.array_equal(reachable, rank < 2)
    assert 0 < reachable.mean() < 1


def test_batches_put_the_positive_where_they_say() -> None:
    from generative.diffatr.train import Batches, TrainOptions

    opts = TrainOptions(candidates=6, pool=10, shard_clips=0, model=tiny_config())
    data = Batches(synthetic_features(), opts)
    rows = np.arange(len(data))
    query, audio, positive, reachable = data.sample(rows)
    assert audio.shape == (len(data), 6, 8)
    assert np.array_equal(audio[rows, positive], data.audio[data.target])
    assert len(set(positive.tolist())) > 1  # shuffled, not always first


def test_batches_mine_negatives_within_a_shard_redrawn_each_epoch() -> None:
    from generative.diffatr.train import Batches, TrainOptions

    opts = TrainOptions(candidates=2, pool=2, shard_clips=10, model=tiny_config())
    data = Batches(synthetic_features(), opts)  # 30 train clips: 3 shards of 10
    assert data.shards == 3
    first = data.shard_of.copy()
    assert sorted(np.bincount(first).tolist()) == [10, 10, 10]
    for _ in range(2):
        assert (data.shard_of[data.negatives] == data.shard_of[data.target][:, None]).all()
        assert not (data.negatives == data.target[:, None]).any()
        data.mine()
    assert not np.array_equal(first, data.shard_of)
    # Within a shard of 10 the clip is in its top 2 more often than in the whole split's.
    whole = Batches(synthetic_features(), TrainOptions(pool=2, shard_clips=0, model=tiny_config()))
    assert data.reachable.mean() > whole.reachable.mean()


def test_sampler_steps_reuse_one_encoding() -> None:
    """`forward` is `denoise(encode(...))`: the sampler encodes once and denoises per step."""
    model = build_denoiser(tiny_config(), seed=4).eval()
    rng = np.random.default_rng(4)
    query, audio = torch.from_numpy(unit(rng, 2, 8)), torch.from_numpy(unit(rng, 2, 5, 8))
    encoded = model.encode(query, audio)
    for t in (0, 9, 19):
        noisy = torch.randn(2, 5)
        assert torch.allclose(
            model.denoise(encoded, noisy, torch.tensor(t)),
            model(noisy, torch.tensor(t), query, audio),
            atol=1e-6,
        )


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    from generative.diffatr.train import fit_to_budget, learning_rate

    rates = [learning_rate(1.0, step, 100) for step in range(101)]
    assert rates[0] < rates[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[5:], rates[6:], strict=False))
    assert rates[100] == pytest.approx(0.0, abs=1e-9)
    # 50 steps took 10 s of a 20 s budget: about 48 more fit, never more than planned.
    assert 90 <= fit_to_budget(50, 1000, 10.0, 20.0) <= 100
    assert fit_to_budget(50, 60, 10.0, 20.0) == 60


@pytest.mark.parametrize("contrastive_weight", [0.0, 0.5])
def test_short_training_lowers_the_loss(contrastive_weight: float) -> None:
    from generative.diffatr.train import TrainOptions, fit

    opts = TrainOptions(
        contrastive_weight=contrastive_weight,
        epochs=30, batch_size=16, candidates=6, pool=10, lr=3e-3, threads=1,
        log_every=1000, model=tiny_config(dropout=0.0),
    )  # fmt: skip
    model, facts = fit(synthetic_features(), opts)
    assert facts["steps"] > 0 and not model.training
    assert facts["final_loss"] < 0.8 * np.log(6)  # chance is ln K


def test_rank_metrics_and_candidate_lists() -> None:
    from generative.diffatr.eval import candidate_lists, rank_metrics

    audio = np.eye(4, dtype=np.float32)
    text = np.asarray([[1, 0.5, 0, 0], [0.1, 0, 0.2, 1]], dtype=np.float32)
    labels = [{"a"}, {"a"}, {"b"}, {"b"}]
    lists = candidate_lists(text, audio, np.asarray([1, 3]), labels, n=3)
    assert lists.index.tolist() == [[0, 1, 2], [3, 2, 0]]
    by_clap = rank_metrics(lists, lists.clap)
    assert by_clap["R@1"] == 0.5 and by_clap["mAP@10"] == pytest.approx(0.75)
    boosted = rank_metrics(lists, lists.clap + np.asarray([[0, 1, 0], [0, 0, 0]]))
    assert boosted["R@1"] == 1.0


def write_mini_corpus(root: Path) -> Path:
    """Eight short clips with two captions each over four splits, in the corpus's format."""
    import json

    import soundfile as sf

    from tests.sounds import SAMPLE_RATE, tone

    lines = []
    for i, split in enumerate(["train"] * 5 + ["val", "test", "ood"]):
        path = f"audio/c{i}.flac"
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / path, tone(i, seconds=0.5), SAMPLE_RATE)
        captions = [f"sound number {i}", f"clip {i} of the corpus"]
        entry = {"id": f"c{i}", "path": path, "captions": captions, "labels": [f"k{i % 2}"]}
        lines.append(json.dumps({**entry, "split": split, "duration": 0.5}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_corpus_features_are_cached_and_subset(tmp_path: Path, tiny_clap) -> None:  # noqa: ANN001
    from generative.clap.features import corpus_features

    corpus = write_mini_corpus(tmp_path / "corpus")
    full = corpus_features(corpus, tiny_clap)
    assert full.audio.shape == (8, tiny_clap.dim) and full.text.shape == (16, tiny_clap.dim)
    assert full.caption_clip.tolist() == [i // 2 for i in range(16)]
    cache = list((corpus / "cache").glob("*.npz"))
    assert len(cache) == 1
    assert np.allclose(
        full.text[2:4], tiny_clap.embed_text(["sound number 1", "clip 1 of the corpus"])
    )
    # Fewer train clips come from the same cache, nothing embedded again.
    cache[0].with_name("ignored.npz").write_bytes(b"")
    some = corpus_features(corpus, tiny_clap, train_clips=2)
    assert (some.splits == "train").sum() == 2 and len(some.splits) == 5
    rows = [full.clip_ids.tolist().index(c) for c in some.clip_ids]
    assert np.array_equal(some.audio, full.audio[rows])
    assert len(list((corpus / "cache").glob("clap-features-*.npz"))) == 1
