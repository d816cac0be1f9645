"""Query expansion: a text query moves toward its nearest training captions and the sounds they
describe; the bank ships beside its CLAP, is chosen on val, is read only for that CLAP, and text
search uses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generative.clap.expansion import (
    EXPANSION_AUDIO,
    EXPANSION_FILE,
    EXPANSION_WEIGHTS,
    CaptionSounds,
    QueryExpansion,
    distinct_captions,
    expand,
)
from generative.clap.expansion_build import build_expansion, caption_sounds, tune
from tests.generative.test_clap_missing import unit, write_corpus


def test_a_query_moves_toward_the_mean_of_its_nearest_captions() -> None:
    bank = unit([1, 0, 0], [0.9, 0.1, 0], [0, 0, 1])
    query = unit([1, 1, 0])
    # k 2: the two captions near the x axis, not the far one on z.
    moved = expand(query, bank, k=2, weight=1.0)
    wanted = query[0] + (bank[0] + bank[1]) / 2
    assert moved[0] == pytest.approx(wanted / np.linalg.norm(wanted), abs=1e-6)
    assert np.linalg.norm(moved, axis=1) == pytest.approx([1.0])
    assert expand(query, bank, k=2, weight=0.0) == pytest.approx(query)  # weight 0: plain
    # The same two captions' sounds pull it too, by their own weight.
    sounds = unit([0, 0, 1], [0, 1, 0], [1, 0, 0])
    moved = expand(query, bank, k=2, weight=1.0, bank_audio=sounds, audio_weight=2.0)
    wanted = query[0] + (bank[0] + bank[1]) / 2 + 2.0 * (sounds[0] + sounds[1]) / 2
    assert moved[0] == pytest.approx(wanted / np.linalg.norm(wanted), abs=1e-6)
    only_sound = expand(query, bank, k=1, weight=0.0, bank_audio=sounds, audio_weight=1.0)
    # k 1: the nearest caption is bank[1] (cosine 0.78 against bank[0]'s 0.71).
    assert only_sound[0] == pytest.approx(unit(query[0] + sounds[1])[0], abs=1e-6)


def test_each_caption_sounds_like_the_mean_of_the_clips_that_carry_it() -> None:
    # Clip 0 carries "a door" twice and "a bell"; clip 2 "a door"; clip 1 carries nothing here.
    audio = unit([1, 0, 0], [0, 0, 1], [0, 1, 0])
    sounds = caption_sounds(["a door", "a bell", "a door", "a door"], np.array([0, 0, 0, 2]), audio)
    assert len(sounds.audio) == 2  # clip 1 is not kept
    assert sounds.caption_audio() == pytest.approx(np.array([[0.5, 0.5, 0], [1, 0, 0]]))
    # A caption without clips sounds like nothing.
    empty = CaptionSounds.from_owners(audio, [[], [1]])
    assert empty.caption_audio() == pytest.approx(np.array([[0, 0, 0], [0, 0, 1]]))
    with pytest.raises(ValueError, match="sounds"):
        QueryExpansion(audio, 1, 1.0, "clap", None, audio_weight=1.0)
    with pytest.raises(ValueError, match="describe 2 captions"):
        QueryExpansion(audio, 1, 1.0, "clap", empty, audio_weight=1.0)


def test_repeated_captions_are_kept_once() -> None:
    vectors = unit([1, 0], [0, 1], [1, 0])
    texts, kept = distinct_captions(["a door", "a bell", "a door"], vectors)
    assert texts == ["a door", "a bell"] and kept == pytest.approx(vectors[:2])


def test_tuning_picks_expansion_only_where_it_finds_more_relevant_clips() -> None:
    # Clips of three classes, twelve each, around the x, y and z axes; the phrase for the x
    # class points between x and z (plain search mixes the two), but the captions nearest to it
    # lie on x: moved toward them, its top 10 are all x clips.
    rng = np.random.default_rng(0)
    axes = np.eye(3, dtype=np.float32)
    audio = unit(*(axes[c] + 0.05 * rng.standard_normal(3) for c in range(3) for _ in range(12)))
    relevant = np.repeat(np.eye(3, dtype=bool), 12, axis=1)[:2]  # queries for x and y
    phrases = unit([1, 0, 1.02], [0, 1, 0])
    bank = unit([1, 0, 0.4], [1, 0, 0.3], [0, 1, 0])
    (k, weight, _), table = tune(bank, phrases, audio, relevant, nearest=(1, 2), weights=(0, 4))
    assert weight == 4 and table[f"k {k}, weight 4"] > table["k 1, weight 0"]
    # Where moving cannot help, plain search (weights 0) is kept.
    plain = unit([1, 0, 0], [0, 1, 0])
    (_, weight, audio_weight), _ = tune(
        bank, plain, audio, relevant, (1, 2), (0, 4), bank_audio=bank, audio_weights=(0, 4)
    )
    assert weight == 0 and audio_weight == 0
    # Captions worded like the query's neighbours on z, whose sounds lie on x: only moving
    # toward their sounds finds the x clips, so an audio weight is chosen.
    near_z = unit([0.1, 0, 1], [0.2, 0, 1], [0, 1, 0])
    sounds = unit([1, 0, 0], [1, 0, 0.1], [0, 1, 0])
    (_, weight, audio_weight), table = tune(
        near_z, phrases, audio, relevant, (1, 2), (0, 4), bank_audio=sounds, audio_weights=(0, 4)
    )
    assert audio_weight == 4 and table[f"k 1, weight {weight:g}, audio weight 4"] > max(
        value for cell, value in table.items() if "audio" not in cell
    )


def test_the_expansion_is_stored_beside_its_clap_and_only_read_for_it(
    tmp_path: Path, tiny_clap_dir: Path, tiny_clap: Any
) -> None:
    from generative.clap.load import load_clap

    checkpoint = tmp_path / "clap"
    shutil.copytree(tiny_clap_dir, checkpoint)
    facts = build_expansion(write_corpus(tmp_path / "corpus"), checkpoint, threads=1)
    stored = json.loads((checkpoint / EXPANSION_FILE).read_text())
    assert stored["clap_model_id"] == tiny_clap.model_id and stored["tuned_on"] == "val"
    assert facts["captions"] == 0  # the tiny corpus has no train clips: nothing to expand with
    # A bank of three captions, made and read back.
    bank = tiny_clap.embed_text(["a low tone", "a high tone", "a middle tone"])
    QueryExpansion(bank, k=2, weight=1.0, clap_model_id=tiny_clap.model_id).save(checkpoint)
    loaded = load_clap(checkpoint)
    assert loaded.expansion is not None and len(loaded.expansion) == 3
    assert loaded.expansion.vectors == pytest.approx(bank, abs=0.01)  # int8 on disk
    query = loaded.embed_query(["a tone"])
    assert query == pytest.approx(expand(tiny_clap.embed_text(["a tone"]), bank, 2, 1.0), abs=0.01)
    assert not np.allclose(query, tiny_clap.embed_text(["a tone"]), atol=1e-3)
    # With the sounds behind the captions: a second file, read with the first.
    sounds = CaptionSounds.from_owners(
        tiny_clap.embed_text(["a bell", "a drum"]), [[0], [1], [0, 1]]
    )
    QueryExpansion(bank, 2, 1.0, tiny_clap.model_id, sounds, audio_weight=2.0).save(checkpoint)
    loaded = load_clap(checkpoint)
    assert loaded.expansion is not None and loaded.expansion.audio_weight == 2.0
    assert loaded.expansion.caption_audio == pytest.approx(sounds.caption_audio(), abs=0.01)
    wanted = expand(
        tiny_clap.embed_text(["a tone"]),
        bank,
        2,
        1.0,
        bank_audio=sounds.caption_audio(),
        audio_weight=2.0,
    )
    assert loaded.embed_query(["a tone"]) == pytest.approx(wanted, abs=0.01)
    (checkpoint / EXPANSION_AUDIO).unlink()
    assert QueryExpansion.load(checkpoint, tiny_clap.model_id) is None  # half a bank: plain
    QueryExpansion(bank, k=2, weight=1.0, clap_model_id=tiny_clap.model_id).save(checkpoint)
    # The evaluation asks the queries both ways.
    from generative.clap.eval import EXPANDED, evaluate_clap

    report = evaluate_clap(tmp_path / "corpus", checkpoint, ("test",), baseline=False)["splits"]
    assert set(report["test"]) == {"trained", EXPANDED}
    assert report["test"][EXPANDED]["lib_queries"] == report["test"]["trained"]["lib_queries"] == 3
    # Made by another CLAP, or unreadable: searched without.
    assert QueryExpansion.load(checkpoint, "clap-compact:another") is None
    (checkpoint / EXPANSION_WEIGHTS).write_bytes(b"not safetensors")
    assert load_clap(checkpoint).expansion is None


def test_text_search_ranks_with_the_expanded_query(
    tmp_path: Path,
    settings: Any,
    library: Path,
    tiny_clap_dir: Path,
    tiny_clap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy import select

    from core.catalog import Embedding
    from core.config import get_settings
    from generative.clap.load import load_clap
    from search.pipeline import find_text
    from tests.search.conftest import open_indexed

    query = "a sound"
    plain = open_indexed(settings, tiny_clap, library)
    try:
        last = find_text(plain, query, 30, rerank=False, mode="audio").results[-1]
        with plain.catalog.session() as session:
            row = session.scalars(select(Embedding).where(Embedding.sound_id == last.id)).one()
            vector = row.as_array()
    finally:
        plain.close()
    # A bank of one caption vector, the last sound's own audio vector, and a heavy weight:
    # the expanded query is about that vector, and that sound must come first.
    checkpoint = tmp_path / "clap"
    shutil.copytree(tiny_clap_dir, checkpoint)
    QueryExpansion(vector[None], k=1, weight=1000.0, clap_model_id=tiny_clap.model_id).save(
        checkpoint
    )
    monkeypatch.setenv("FOLEY_DATA_DIR", str(tmp_path / "data-expanded"))
    get_settings.cache_clear()
    expanded = open_indexed(get_settings(), load_clap(checkpoint), library)
    try:
        found = find_text(expanded, query, 3, rerank=False, mode="audio")
    finally:
        expanded.close()
    assert found.results[0].title == last.title
    assert found.results[0].clap_score == pytest.approx(1.0, abs=0.02)
