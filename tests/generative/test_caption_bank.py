"""The caption bank: nearest captions by CLAP audio similarity, stored compactly, training
neighbours that never include the clip's own recording (or, in the second set, its class),
and similar clips' captions reaching the captioner's encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generative.captioner.bank import CaptionBank, training_neighbours  # noqa: E402
from generative.captioner.pipeline import (  # noqa: E402
    CaptionerLoadError,
    build_random_captioner,
    load_captioner,
    save_captioner,
)
from generative.captioner.tokenizer import SIMILAR, neighbour_text  # noqa: E402


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_nearest_captions_best_first_and_survive_saving(tmp_path) -> None:  # noqa: ANN001
    vectors = _unit(np.eye(4, 8) + 0.05)
    bank = CaptionBank(["a dog barks", "rain falls", "a bell rings", "wind howls"], vectors, "c1")
    query = _unit(np.asarray([[0.0, 1.0, 0.6, 0, 0, 0, 0, 0]]))
    assert bank.neighbour_captions(query, 2) == [["rain falls", "a bell rings"]]
    assert bank.nearest(query, 10).shape == (1, 4)  # never more than the bank holds
    bank.save(tmp_path)
    loaded = CaptionBank.load(tmp_path)
    assert loaded is not None and loaded.clap_model_id == "c1"
    assert np.abs(loaded.embeddings - vectors).max() < 0.01  # int8 on disk
    assert loaded.neighbour_captions(query, 2) == [["rain falls", "a bell rings"]]
    assert CaptionBank.load(tmp_path / "elsewhere") is None


def test_training_neighbours_leave_out_the_clips_recording_and_class() -> None:
    rng = np.random.default_rng(0)
    centres = _unit(rng.standard_normal((3, 16)))
    # Clips 0-3 are two recordings of class a (0, 1 share one); 4-7 class b; 8-9 class c.
    classes = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    groups = ["r0", "r0", "r1", "r2", "r3", "r3", "r4", "r5", "r6", "r7"]
    centre_of = {"a": 0, "b": 1, "c": 2}
    vectors = _unit(np.stack([centres[centre_of[c]] for c in classes])
                    + 0.05 * rng.standard_normal((10, 16)))  # fmt: skip
    by_group, by_class = training_neighbours(vectors, groups, classes, k=3, chunk=4)
    for i in range(10):
        found = [j for j in by_group[i] if j >= 0]
        assert i not in found and all(groups[j] != groups[i] for j in found)
        assert all(classes[j] != classes[i] for j in by_class[i] if j >= 0)
    # Outside its own recording, clip 0's nearest are the other recordings of its class.
    assert set(by_group[0][:2]) == {2, 3}
    assert (by_class >= 0).all()


def test_similar_captions_reach_the_encoder(tiny_clap, tmp_path) -> None:  # noqa: ANN001
    captioner = build_random_captioner(tiny_clap, seed=0)
    assert captioner.config.neighbours == 2 and captioner.bank is not None
    ids = captioner.tokenizer.encode_inputs("<title> bell", ["a bell rings"], 16, 16)
    assert captioner.tokenizer.tokenizer.token_to_id(SIMILAR) in ids
    assert neighbour_text(["A Bell rings", "wind"]) == f"{SIMILAR} a bell rings {SIMILAR} wind"
    frames = [np.random.default_rng(1).standard_normal((5, 512)).astype(np.float32)]
    clap = captioner.bank.embeddings[:1]
    with_near = captioner.caption_features(frames, clap, [""])
    assert with_near == captioner.caption_features(frames, clap, [""])  # deterministic
    # The checkpoint carries its bank; a captioner that reads neighbours refuses to go without.
    save_captioner(captioner, tmp_path)
    loaded = load_captioner(tmp_path, clap=tiny_clap)
    assert loaded.bank is not None and loaded.bank.captions == captioner.bank.captions
    assert loaded.caption_features(frames, clap, [""]) == with_near
    (tmp_path / "bank.json").unlink()
    with pytest.raises(CaptionerLoadError, match="bank.json"):
        load_captioner(tmp_path, clap=tiny_clap)


def test_consensus_prefers_the_candidate_its_neighbours_agree_with() -> None:
    from generative.captioner.consensus import agreement, candidates_of, choose

    near = ["a dog barks twice", "a dog barks loudly", "rain on a roof"]
    assert agreement("a dog barks", near) > agreement("the bell rings", near) == 0.0
    assert agreement("rain on a roof", ["rain on a roof"]) == 0.0  # itself does not count
    assert candidates_of(["a dog", "a cat"], ["a cat", "rain"]) == ["a dog", "a cat", "rain"]
    # Likelihood alone picks the model's favourite; enough weight picks the agreed one.
    texts, logprob = ["a bell rings", "a dog barks"], [-0.5, -1.0]
    assert choose(texts, logprob, near, weight=0.0) == "a bell rings"
    assert choose(texts, logprob, near, weight=4.0) == "a dog barks"


def test_consensus_weighs_rare_words_over_common_ones() -> None:
    from generative.captioner.consensus import DocumentFrequency, agreement

    bank = [f"the sound of a {thing}" for thing in ("dog", "bell", "door", "car")] * 5
    bank += ["a dog barks", "rain on a roof"]
    frequency = DocumentFrequency(bank)
    assert frequency.count == 22 and frequency.idf(("sound",)) < frequency.idf(("barks",))
    assert frequency.idf(("never", "seen")) == pytest.approx(math.log(22))
    near = ["the sound of a bell", "a dog barks loudly"]
    # Without frequencies the candidate sharing more words wins; with them, the one sharing
    # the word that names the sound.
    common, named = "the sound of a car", "dog barks"
    assert agreement(common, near) > agreement(named, near)
    assert agreement(named, near, frequency) > agreement(common, near, frequency)
    # Lengths far apart agree less (CIDEr-D's length penalty).
    long = "a dog barks " + "and then " * 8
    assert agreement(long, ["a dog barks"]) < agreement("a dog barks there", ["a dog barks"])


def test_the_closest_near_clips_decide_at_a_low_temperature() -> None:
    from generative.captioner.consensus import agreement, choose, near_weights

    assert near_weights([0.9, 0.5], 0.0).tolist() == [1.0, 1.0]
    assert near_weights([0.9, 0.5], 0.01)[1] < 1e-12 < near_weights([0.9, 0.5], 0.01)[0] == 1.0
    # Two near clips say rain, a closer one says a dog: all alike, rain wins; weighed by
    # similarity, the dog, unless the clips are about as close.
    near = ["a dog barks", "heavy rain falls", "rain falls hard"]
    texts, logprob = ["a dog barks loudly", "heavy rain falls hard"], [-1.0, -1.0]
    assert choose(texts, logprob, near, 4.0) == "heavy rain falls hard"
    assert choose(texts, logprob, near, 4.0, None, [0.9, 0.6, 0.6], 0.02) == texts[0]
    assert choose(texts, logprob, near, 4.0, None, [0.61, 0.6, 0.6], 0.02) == texts[1]
    weights = near_weights([0.9, 0.6, 0.6], 0.02)
    assert agreement(texts[1], near, None, weights) < agreement(texts[1], near)


def test_near_clips_come_with_their_similarity(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    bank = CaptionBank([f"caption {i}" for i in range(6)], vectors, "clap:x")
    captions, sims = bank.neighbours(vectors[:2], 3)
    assert captions == bank.neighbour_captions(vectors[:2], 3)
    for query, row, found in zip(vectors[:2], sims, captions, strict=True):
        expected = [float(query @ vectors[int(c.split()[1])]) for c in found]
        assert row == pytest.approx(expected, abs=1e-6) and row == sorted(row, reverse=True)


def test_reranking_candidates_are_the_beams_and_the_near_captions(tiny_clap) -> None:  # noqa: ANN001
    captioner = build_random_captioner(tiny_clap, seed=0)
    frames = [np.random.default_rng(2).standard_normal((5, 512)).astype(np.float32)] * 2
    clap = captioner.bank.embeddings[:2]
    found = captioner.caption_candidates(frames, clap, ["", "<title> rain"], consensus_k=3)
    for item, query in zip(found, clap, strict=True):
        assert item.near == captioner.bank.neighbour_captions(query[None], 3)[0]
        assert item.near_similarity == captioner.bank.neighbours(query[None], 3)[1][0]
        assert set(item.near) <= set(item.texts) and len(item.texts) == len(item.logprob)
        assert all(lp <= 0 for lp in item.logprob)
    off = captioner.caption_candidates(frames, clap, ["", ""], neighbours=False)
    assert all(len(item.texts) == 1 and not item.near for item in off)
