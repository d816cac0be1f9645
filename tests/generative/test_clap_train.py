"""CLAP training and evaluation on a tiny corpus written in the test: the run is seeded, saves a
loadable checkpoint with its card, and the metrics mean what they say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generative.clap.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, tiny_clap_config
from generative.clap.eval import format_markdown, read_manifest, retrieval_metrics

SR = 16000
CLASSES = {"beep": 880.0, "hum": 120.0, "chirp": 3000.0}


def write_corpus(root: Path, per_class: int = 6) -> Path:
    """FLAC clips of three tone classes in the corpus manifest format."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    (root / "audio").mkdir(parents=True)
    for name, freq in CLASSES.items():
        for i in range(per_class):
            seconds = float(rng.uniform(0.5, 2.5))
            t = np.arange(int(seconds * SR)) / SR
            wave = 0.5 * np.sin(2 * np.pi * freq * (1 + 0.05 * i) * t)
            wave += 0.02 * rng.standard_normal(t.size)
            path = f"audio/{name}_{i}.flac"
            sf.write(root / path, wave.astype(np.float32), SR)
            split = "train" if i < per_class - 2 else "test" if i == per_class - 2 else "ood"
            captions = [f"a {name}", f"the sound of a {name}", f"{name} number {i}"]
            rows.append({
                "id": f"{name}_{i}", "path": path, "captions": captions, "labels": [name],
                "source": "test", "split": split, "duration": seconds, "sample_rate": SR,
                "meta": {}, "params": {},
            })  # fmt: skip
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def quick_train(corpus: Path, out: Path, steps: int = 20) -> Path:
    from generative.clap.train import train_clap

    return train_clap(
        corpus, out, seed=0, config=tiny_clap_config(), batch_size=4, max_steps=steps,
        warmup_steps=5, val_clips=0, evaluate=False, log_every=10,
    )  # fmt: skip


def test_manifest_is_read(corpus: Path) -> None:
    clips = read_manifest(corpus)
    assert len(clips) == 18
    assert {c.split for c in clips} == {"train", "test", "ood"}
    assert all(c.path.is_file() and len(c.captions) == 3 for c in clips)


def test_twenty_step_run_is_seeded_and_loadable(corpus: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from generative.clap.load import load_clap
    from generative.clap.model import build_random_clap

    first = quick_train(corpus, tmp_path / "a")
    for name in (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE):
        assert (first / name).is_file()
    assert "20 steps" in (first / CARD_FILE).read_text()
    with safe_open(str(first / WEIGHTS_FILE), framework="pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} <= {"torch.float16", "torch.int64"}
    model = load_clap(first)
    assert model.embed_text(["a beep"]).shape == (1, 32)
    # The weights moved away from the seed's initialisation.
    start = build_random_clap(tiny_clap_config(), seed=0).state_dict()["audio_projection.0.weight"]
    trained = model.module.state_dict()["audio_projection.0.weight"]
    assert (trained - start).abs().max() > 1e-3


def test_same_seed_same_weights(corpus: Path, tmp_path: Path) -> None:
    first = quick_train(corpus, tmp_path / "a", steps=3)
    second = quick_train(corpus, tmp_path / "b", steps=3)
    assert (first / WEIGHTS_FILE).read_bytes() == (second / WEIGHTS_FILE).read_bytes()


def test_evaluation_reports_trained_and_random(corpus: Path, tiny_clap_dir: Path) -> None:
    from generative.clap.eval import evaluate_clap

    results = evaluate_clap(corpus, tiny_clap_dir)
    assert set(results["splits"]) == {"test", "ood"}
    test = results["splits"]["test"]
    assert set(test) == {"trained", "random"}
    assert test["trained"]["clips"] == 3 and test["trained"]["captions"] == 9
    assert test["trained"]["classes"] == 3
    assert all(0.0 <= test["random"][k] <= 1.0 for k in ("t2a_R@1", "class_P@10"))
    table = format_markdown(results)
    assert table.count("| test (3 clips, 9 captions) |") == 2
    assert "trained ÷ random" in table


def test_retrieval_metrics_on_known_rankings() -> None:
    audio = np.eye(4, dtype=np.float32)  # 4 clips, orthogonal
    owner = np.array([0, 0, 1, 1, 2, 3])
    labels = [{"a"}, {"a"}, {"b"}, {"c"}]
    perfect = retrieval_metrics(audio[owner], audio, owner, labels)
    assert perfect["t2a_R@1"] == 1.0 and perfect["a2t_R@1"] == 1.0
    assert perfect["t2a_mAP@10"] == 1.0 and perfect["a2t_mAP@10"] == 1.0


def test_retrieval_metrics_count_ties_and_misses() -> None:
    audio = np.array([[1.0, 0.0], [0.0, 1.0]])
    owner = np.array([0, 0, 1])
    text = np.array([[0.3, 0.7], [0.9, 0.1], [0.45, 0.55]])
    metrics = retrieval_metrics(text, audio, owner, [{"a"}, {"b"}])
    # Text queries: the first caption finds clip 1 first, the others hit.
    assert metrics["t2a_R@1"] == pytest.approx(2 / 3)
    assert metrics["t2a_mAP@10"] == pytest.approx((0.5 + 1 + 1) / 3)
    # Clip 0's captions rank 1st and 3rd; clip 1's only caption ranks 2nd.
    assert metrics["a2t_R@1"] == pytest.approx(1 / 2)
    assert metrics["a2t_R@5"] == 1.0
    assert metrics["a2t_mAP@10"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)
    assert metrics["class_P@10"] == pytest.approx(0.5)  # top 2 of 2 clips, one shares a label
    # A model that scores everything alike ranks nothing first.
    flat = retrieval_metrics(np.ones((3, 2)), np.ones((2, 2)), owner, [{"a"}, {"b"}])
    assert flat["t2a_R@1"] == 0.0


@pytest.mark.slow
def test_committed_checkpoint_beats_random_weights() -> None:
    """models/clap-compact on the corpus test split (FOLEY_CORPUS_DIR, else ../corpus)."""
    import os

    from core.config import REPO_ROOT
    from generative.clap.eval import RETRIEVAL_METRICS, evaluate_clap

    checkpoint = REPO_ROOT / "models" / "clap-compact"
    corpus = Path(os.environ.get("FOLEY_CORPUS_DIR", REPO_ROOT.parent / "corpus"))
    if not (corpus / "manifest.jsonl").is_file() or not (checkpoint / WEIGHTS_FILE).is_file():
        pytest.skip(f"needs the corpus at {corpus} and the checkpoint at {checkpoint}")
    results = evaluate_clap(corpus, checkpoint, splits=("test",))
    trained, random = results["splits"]["test"]["trained"], results["splits"]["test"]["random"]
    assert trained["class_P@10"] >= 0.6
    for key in RETRIEVAL_METRICS:
        assert trained[key] >= 5 * random[key], key


def test_library_ranking_against_random() -> None:
    from generative.clap.eval import library_ranking

    relevant = np.zeros((2, 100), dtype=bool)
    relevant[0, :5] = True  # a rare label, ranked perfectly
    relevant[1, 50:70] = True  # a common one, which every clip scores alike
    scores = np.zeros((2, 100))
    scores[0, :5] = 1.0
    metrics = library_ranking(scores, relevant)
    # Query 0: 5 of the top 10; query 1: ties count against it, so none.
    assert metrics["lib_P@10"] == pytest.approx((0.5 + 0.0) / 2)
    assert metrics["lib_random_P@10"] == pytest.approx((0.05 + 0.2) / 2)
    assert metrics["lib_P@10_x_random"] == pytest.approx(0.25 / 0.125)
    assert metrics["lib_R@50"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["lib_random_R@50"] == pytest.approx(0.5)
    assert metrics["lib_queries"] == 2


def test_augmentations_keep_length_and_loudness() -> None:
    from generative.clap.train import random_eq, random_room

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    waves = np.stack([np.sin(2 * np.pi * 440 * t), rng.standard_normal(16000) * 0.1])
    eq = random_eq(waves.astype(np.float32), rng, max_db=6.0)
    assert eq.shape == waves.shape and eq.dtype == np.float32
    ratio = np.sqrt((eq**2).mean(axis=1) / (waves**2).mean(axis=1))
    assert np.all((ratio > 10 ** (-6.5 / 20)) & (ratio < 10 ** (6.5 / 20)))  # within ±6 dB
    assert not np.allclose(eq, waves, atol=1e-3)
    room = random_room(waves[0].astype(np.float32), rng, 16000)
    assert room.shape == (16000,)
    assert np.sqrt((room**2).mean()) == pytest.approx(np.sqrt((waves[0] ** 2).mean()), rel=1e-3)
    assert not np.allclose(room, waves[0], atol=1e-3)


def test_val_sample_is_half_recorded_and_seeded(corpus: Path) -> None:
    from dataclasses import replace

    from generative.clap.train import val_sample

    clips = read_manifest(corpus)
    mixed = [replace(c, source="recorded" if i % 5 == 0 else "procedural")
             for i, c in enumerate(clips * 10)]  # fmt: skip
    sample = val_sample(mixed, 40, seed=0)
    assert len(sample) == 40
    assert sum(c.source == "recorded" for c in sample) == 20
    assert sample == val_sample(mixed, 40, seed=0)


def test_previous_splits_leave_out_the_recorded_packages(corpus: Path) -> None:
    from dataclasses import replace

    from generative.clap.eval import split_clips

    clips = [replace(c, source="procedural") for c in read_manifest(corpus)]
    test = [c for c in clips if c.split == "test"]
    field = replace(test[0], id="field", source="recorded", variant="mixture")
    speech = replace(test[0], id="spoken", source="recorded-speech")
    everything = [*clips, field, speech]
    assert {c.id for c in split_clips(everything, "test")} == {c.id for c in test} | {
        "field",
        "spoken",
    }
    assert [c.id for c in split_clips(everything, "test-previous")] == [c.id for c in test]


def tiny_sentence_config() -> dict:
    return {**tiny_clap_config(), "text_cfg": {"model_type": "sentence", "width": 384}}


def test_sentence_text_side_trains_only_its_projection(corpus: Path, tmp_path: Path) -> None:
    """A CLAP over the frozen sentence encoder: trains, saves without the encoder's weights,
    loads back, and reads texts the same way after the round trip."""
    from safetensors import safe_open

    from generative.clap.load import load_clap
    from generative.clap.train import train_clap

    out = train_clap(
        corpus, tmp_path / "s", seed=0, config=tiny_sentence_config(), batch_size=4,
        max_steps=6, warmup_steps=2, val_clips=0, evaluate=False,
    )  # fmt: skip
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as f:
        names = list(f.keys())
    assert any(n.startswith("text_projection.") for n in names)
    assert not any(n.startswith(("text_branch.", "token_embedding.")) for n in names)
    model = load_clap(out)
    assert "frozen sentence encoder" in (out / CARD_FILE).read_text()
    vectors = model.embed_text(["a beep", "a hum", "a beep"])
    assert vectors.shape == (3, 32)
    assert np.allclose(vectors[0], vectors[2], atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)


def test_sentence_encoder_knows_words_the_corpus_never_taught() -> None:
    """Paraphrases sit closer than unrelated sounds: what the frozen encoder brings."""
    from generative.clap.sentence import sentence_encoder

    queries = sentence_encoder().encode(["chopping wood", "a dog barking"]).numpy()
    names = sentence_encoder().encode(["axe chop, wood", "dog bark", "glass break"]).numpy()
    sims = queries @ names.T
    assert sims[0].argmax() == 0 and sims[1].argmax() == 1


def test_sentence_config_is_checked() -> None:
    from generative.clap.config import validate_config

    with pytest.raises(ValueError, match="384-d"):
        validate_config({**tiny_clap_config(), "text_cfg": {"model_type": "sentence", "width": 96}})
    with pytest.raises(ValueError, match="'bert'"):
        text = {"model_type": "bert", "width": 1, "context_length": 1, "vocab_size": 1,
                "heads": 1, "layers": 1}  # fmt: skip
        validate_config({**tiny_clap_config(), "text_cfg": text})


def test_sentence_encoder_graph_gives_the_eager_models_numbers() -> None:
    """The encoder runs as a traced graph: for batches of other sizes and lengths than it
    was traced on, with and without padding, the same vectors as the eager model."""
    import torch

    from generative.clap.sentence import sentence_encoder

    encoder = sentence_encoder()
    encoder.encode(["a first text pass builds the graph"])
    assert isinstance(encoder._graph, torch.jit.ScriptModule)
    batches = [["wind"], ["a", "a very long description of a car engine starting in the cold"],
               [f"sound number {i}" for i in range(20)]]  # fmt: skip
    for texts in batches:
        batch = encoder.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            eager = encoder.model(**batch).last_hidden_state
            graph = encoder._forward(batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(graph, eager, rtol=0, atol=1e-5)


def test_recorded_share_puts_that_share_of_recorded_clips_in_every_batch(corpus: Path) -> None:
    from dataclasses import replace

    from generative.clap.train import Trainer, TrainOptions

    clips = [c for c in read_manifest(corpus) if c.split == "train"]
    clips = [replace(c, source="recorded" if i % 4 == 0 else "procedural")
             for i, c in enumerate(clips)]  # fmt: skip
    opts = TrainOptions(config=tiny_clap_config(), batch_size=4, recorded_share=0.5, val_clips=0)
    batches = Trainer(clips, opts).epoch_batches(4)
    assert len(batches) == len(clips) // 4
    for batch in batches:
        assert [clips[i].source for i in batch].count("recorded") == 2
    # Without a share, an epoch is one permutation of every clip.
    plain = Trainer(clips, TrainOptions(config=tiny_clap_config(), batch_size=4, val_clips=0))
    assert sorted(np.concatenate(plain.epoch_batches(4))) == list(range(len(clips)))


def test_init_starts_every_weight_from_a_checkpoint(corpus: Path, tmp_path: Path) -> None:
    from generative.clap.load import load_clap
    from generative.clap.model import ClapLoadError
    from generative.clap.train import Trainer, TrainOptions

    start = quick_train(corpus, tmp_path / "a", steps=3)
    clips = [c for c in read_manifest(corpus) if c.split == "train"]
    trainer = Trainer(clips, TrainOptions(config=tiny_clap_config(), init=start, val_clips=0))
    own = trainer.model.state_dict()
    for name, tensor in load_clap(start).module.state_dict().items():
        assert np.allclose(own[name].float().numpy(), tensor.float().numpy()), name
    other = {**tiny_clap_config(), "joint_embed_shape": 16}
    with pytest.raises(ClapLoadError, match="another config"):
        Trainer(clips, TrainOptions(config=other, init=start, val_clips=0))


def test_same_label_loss_is_clip_loss_when_labels_differ() -> None:
    import torch
    import torch.nn.functional as F

    from generative.clap.config import clap_module
    from generative.clap.train import same_label_loss

    gen = torch.Generator().manual_seed(0)
    audio = F.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    text = F.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    scale = torch.tensor(20.0)
    own = clap_module().ClipLoss()(audio, text, scale)
    assert torch.allclose(same_label_loss(audio, text, scale, torch.arange(6)), own)
    # Two clips of one class whose captions are swapped: ClipLoss counts each caption as the
    # other clip's mismatch; with same-label matches the pair costs less.
    swapped = text[[1, 0, 2, 3, 4, 5]]
    kinds = torch.tensor([0, 0, 1, 2, 3, 4])
    assert same_label_loss(audio, swapped, scale, kinds) < clap_module().ClipLoss()(
        audio, swapped, scale
    )


def test_label_positives_train_and_bad_names_are_refused(corpus: Path, tmp_path: Path) -> None:
    from generative.clap.train import Trainer, TrainOptions, train_clap

    out = train_clap(
        corpus, tmp_path / "label", seed=0, config=tiny_clap_config(), batch_size=4,
        max_steps=3, warmup_steps=1, val_clips=0, evaluate=False, positives="label",
    )  # fmt: skip
    assert "same-labelled" in (out / CARD_FILE).read_text()
    clips = [c for c in read_manifest(corpus) if c.split == "train"]
    with pytest.raises(ValueError, match="positives must be one of own, label"):
        Trainer(clips, TrainOptions(config=tiny_clap_config(), positives="class", val_clips=0))
