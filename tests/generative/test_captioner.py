"""AutoCap: a tiny captioner trains, decodes deterministically, reads its metadata, tags,
segments long files, round-trips through a checkpoint; the caption metrics on known cases;
and a whole tiny training run through `foley train captioner`'s function."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from generative.captioner.model import build_autocap, collate, tiny_captioner_config  # noqa: E402
from generative.captioner.pipeline import (  # noqa: E402
    CaptionerLoadError,
    build_random_captioner,
    load_captioner,
    save_captioner,
)
from generative.captioner.tags import TagScorer, tag_metrics, tag_name  # noqa: E402
from generative.captioner.tokenizer import informative_title, metadata_text  # noqa: E402
from tests.sounds import SAMPLE_RATE, tone  # noqa: E402


@pytest.fixture(scope="module")
def captioner(tiny_clap):  # noqa: ANN001, ANN201
    return build_random_captioner(tiny_clap, seed=0)


def _batch(captioner, titles: list[str | None]):  # noqa: ANN001, ANN202
    rng = np.random.default_rng(0)
    meta = [captioner.tokenizer.encode_metadata(metadata_text({"title": t, "folder": "fx"}), 16)
            for t in titles]  # fmt: skip
    labels = [captioner.tokenizer.encode_caption("a dog barks twice", 12) for _ in titles]
    # Every item hears the same audio; only the metadata differs.
    frames = [rng.standard_normal((5, 512)).astype(np.float32)] * len(titles)
    clap = np.repeat(rng.standard_normal((1, captioner.config.clap_dim)), len(titles), axis=0)
    return collate(frames, clap, meta, labels, captioner.config)


def test_tiny_model_trains_a_step(captioner) -> None:  # noqa: ANN001
    model = build_autocap(captioner.config, seed=0).train()
    batch = _batch(captioner, ["dog bark", None])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_metadata_reaches_the_encoder(captioner) -> None:  # noqa: ANN001
    model = captioner.model
    batch = _batch(captioner, ["dog bark", "rain roof", "dog bark"])
    keys = ("frames", "frame_mask", "clap", "meta_ids", "meta_mask")
    with torch.no_grad():
        embeds, mask = model.encoder_inputs(*(batch[k] for k in keys))
        hidden = model.bart.model.encoder(inputs_embeds=embeds, attention_mask=mask)
    hidden = hidden.last_hidden_state  # (3, Q + 1 + M, d)
    audio = captioner.config.queries + 1
    assert embeds.shape[1] == audio + batch["meta_ids"].shape[1]
    assert torch.equal(embeds[0, :audio], embeds[1, :audio])  # the same audio tokens
    assert not torch.allclose(embeds[0, audio:], embeds[1, audio:])
    # The encoder mixes the title into the audio positions too; the same title, the same output.
    assert not torch.allclose(hidden[0, 0], hidden[1, 0])
    assert torch.allclose(hidden[0], hidden[2], atol=1e-6)


def test_metadata_text_tags_fields(captioner) -> None:  # noqa: ANN001
    text = metadata_text({"title": "Siren_High-01", "folder": "Vehicles/Sirens"})
    assert text == "<title> siren high 01 <folder> vehicles / sirens"
    assert metadata_text({"file_name": "doorCreak.wav"}) == "<title> door creak"
    assert metadata_text(None) == "" and metadata_text({"title": "  "}) == ""
    ids = captioner.tokenizer.encode_metadata(text, 32)
    assert ids[0] == captioner.tokenizer.tokenizer.token_to_id("<title>")
    assert captioner.tokenizer.tokenizer.token_to_id("<folder>") in ids


@pytest.mark.parametrize(
    ("title", "informative"),
    [("Audio Track 3", False), ("REC_0042.wav", False), ("ZOOM0001", False),
     ("Voice Memo 12", False), ("DSC_0031", False), ("Take 5 (copy)", False), ("", False),
     ("rain", True), ("doorCreak", True), ("Siren_High-01", True), ("ball bounce 2", True),
     ("жаба", True), ("STE-001", True)],
)  # fmt: skip
def test_a_title_that_says_nothing_reaches_the_model_as_no_title(
    title: str, informative: bool
) -> None:
    assert informative_title(title) is informative
    text = metadata_text({"file_name": title, "folder": "Field"})
    assert text.startswith("<title>") is informative and text.endswith("<folder> field")
    if title:  # training still shows the model such a title (metadata dropout)
        kept = metadata_text({"file_name": title}, keep_uninformative=True)
        assert kept.startswith("<title>")


def test_caption_is_deterministic_and_segments_long_files(captioner) -> None:  # noqa: ANN001
    loud_middle = np.concatenate([0.05 * tone(1, 10.0), 0.9 * tone(2, 10.0), 0.05 * tone(3, 5.0)])
    waves = [tone(0, 2.0), loud_middle]
    meta = [{"title": "Dog bark"}, None]
    first = captioner.caption(waves, meta)
    again = captioner.caption(waves, meta)
    assert first == again
    assert [(s.start_s, s.end_s) for s in first[1].segments] == [(0, 10), (10, 20), (20, 25)]
    assert first[1].caption == first[1].segments[1].caption  # the loudest segment
    assert len(first[0].segments) == 1 and first[0].segments[0].end_s == 2.0
    with pytest.raises(ValueError, match="metadata"):
        captioner.caption(waves, [None])


def test_tags_are_between_3_and_10_and_hyphenated(captioner) -> None:  # noqa: ANN001
    results = captioner.caption([tone(4, 1.0)], [{"title": "gravel footstep"}])
    assert 3 <= len(results[0].tags) <= 10
    assert "gravel-footstep" in results[0].tags
    labels = [f"label {i}" for i in range(30)]
    scores = np.linspace(0, 1, 30)[None, :]
    assert len(TagScorer(labels, thresholds=[-1.0] * 30).select(scores)[0]) == 10
    few = TagScorer(labels, thresholds=[2.0] * 30).select(scores)[0]
    assert few == ["label-29", "label-28", "label-27"]  # best margins fill up to 3
    for tag in results[0].tags + few:
        assert tag == tag_name(tag) and tag == tag.lower() and " " not in tag
    metrics = tag_metrics([["dog", "bark", "x"]], [["Dog", "wind"]])
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == 0.5


def test_checkpoint_round_trip(captioner, tiny_clap, tmp_path: Path) -> None:  # noqa: ANN001
    save_captioner(captioner, tmp_path / "cap")
    loaded = load_captioner(tmp_path / "cap", clap=tiny_clap)
    assert loaded.model_id.startswith("autocap:") and loaded.clap_model_id == tiny_clap.model_id
    waves = [tone(5, 1.2)]
    assert loaded.caption(waves, [{"title": "bell"}]) == captioner.caption(
        waves, [{"title": "bell"}]
    )
    config = json.loads((tmp_path / "cap" / "config.json").read_text())
    config["clap_model_id"] = "clap-compact:another"
    (tmp_path / "cap" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CaptionerLoadError, match="trained on CLAP"):
        load_captioner(tmp_path / "cap", clap=tiny_clap)
    assert not load_captioner(tmp_path / "cap", clap=tiny_clap, check_clap=False).clap_matches
    with pytest.raises(CaptionerLoadError, match="lacks"):
        load_captioner(tmp_path / "missing", clap=tiny_clap)


def test_registry_refuses_a_missing_or_foreign_checkpoint(
    settings, captioner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # noqa: ANN001
    from core.config import get_settings
    from generative import registry

    registry.clear_models()
    monkeypatch.setenv("FOLEY_CAPTIONER_CHECKPOINT", str(tmp_path / "none"))
    get_settings.cache_clear()
    assert registry.get_captioner() is None
    assert "no checkpoint" in registry.captioner_status()
    save_captioner(captioner, tmp_path / "cap")
    monkeypatch.setenv("FOLEY_CAPTIONER_CHECKPOINT", str(tmp_path / "cap"))
    get_settings.cache_clear()
    loaded = registry.get_captioner()
    assert loaded is not None and registry.get_captioner() is loaded
    assert registry.captioner_status() == "loaded"
    registry.clear_models()


def test_caption_metrics_on_a_known_example() -> None:
    from generative.captioner.eval import caption_metrics

    refs = {"a": ["a dog barks twice in a yard", "a dog is barking outside"],
            "b": ["rain falls on a tin roof", "heavy rain on a metal roof"]}  # fmt: skip
    exact = caption_metrics(refs, {"a": "a dog barks twice in a yard",
                                   "b": "rain falls on a tin roof"}, meteor=False)  # fmt: skip
    wrong = caption_metrics(refs, {"a": "a bell rings", "b": "a car passes by"}, meteor=True)
    assert exact["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert exact["ROUGE-L"] == pytest.approx(1.0)
    assert exact["CIDEr-D"] > 1.0 > wrong["CIDEr-D"]
    assert wrong["BLEU-4"] < 1e-3 and 0.0 <= wrong["METEOR"] < 0.2


def _tiny_corpus(root: Path) -> None:
    import soundfile as sf

    rows = []
    for i in range(24):
        kind = i % 4
        name = ["dog", "rain", "bell", "wind"][kind]
        path = f"audio/{i:03d}.flac"
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / path, tone(kind * 5, 1.0 + 0.1 * (i % 3)), SAMPLE_RATE)
        split = "val" if i % 6 == 5 else "train"
        rows.append({"id": f"c{i:03d}", "path": path, "split": split, "labels": [name],
                     "captions": [f"a {name} sound", f"the sound of a {name}"],
                     "meta": {"title": f"{name} {i}", "folder": "fx"}})  # fmt: skip
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_training_run_writes_a_loadable_checkpoint(tiny_clap_dir: Path, tmp_path: Path) -> None:
    from generative.captioner.train import train_captioner
    from generative.clap.load import load_clap

    _tiny_corpus(tmp_path / "corpus")
    out = train_captioner(
        tmp_path / "corpus", tmp_path / "cap", tiny_clap_dir, max_minutes=1.0, epochs=3,
        batch_size=8, vocab_size=300, tag_min_count=1, threads=1, neighbours=3,
        model=tiny_captioner_config(),
    )  # fmt: skip
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tags.json", "README.md",
                 "bank.json", "bank.safetensors"):  # fmt: skip
        assert (out / name).is_file()
    assert list((tmp_path / "corpus" / "cache").glob("captioner-frames-*.npz"))
    loaded = load_captioner(out, clap=load_clap(tiny_clap_dir))
    assert loaded.config.num_beams in (1, 2, 3)
    # The bank holds one caption per train clip: the encoder reads the nearest 3.
    assert loaded.config.neighbours == 3 and loaded.bank is not None and len(loaded.bank) == 20
    assert len(loaded.tags.thresholds) == len(loaded.tags.labels) == 4
    assert 3 <= len(loaded.caption([tone(0, 1.0)])[0].tags) <= 4
    # The words a search evaluation gives each clip of a split: captioned without metadata.
    from generative.captioner.eval import split_words

    words = split_words(tmp_path / "corpus", loaded, "val", threads=1)
    assert sorted(words) == [f"c{i:03d}" for i in range(24) if i % 6 == 5]
    for clip_words in words.values():
        assert isinstance(clip_words["caption"], str) and 3 <= len(clip_words["tags"]) <= 4
    with pytest.raises(ValueError, match="no clips"):
        split_words(tmp_path / "corpus", loaded, "ood-real", threads=1)
    # The evaluation on a corpus whose frames were never cached (built after the training):
    # the nearest-neighbour baseline still searches every train clip.
    from generative.captioner.eval import run_eval

    for cached in (tmp_path / "corpus" / "cache").glob("captioner-frames-*.npz"):
        cached.unlink()
    report = run_eval(tmp_path / "corpus", out, tiny_clap_dir, splits=("val",), max_clips=None,
                      threads=1)  # fmt: skip
    assert set(report["splits"]["val"]["rows"]) >= {"meta", "none", "nn", "template"}
    # A second run can start from this checkpoint: same tokenizer and architecture, and its
    # weights (at learning rate 0 they stay as they were).
    again = train_captioner(
        tmp_path / "corpus", tmp_path / "again", tiny_clap_dir, max_minutes=1.0, epochs=1,
        batch_size=8, tag_min_count=1, threads=1, init=out, lr=0.0,
    )  # fmt: skip
    assert (again / "tokenizer.json").read_text() == (out / "tokenizer.json").read_text()
    carried = load_captioner(again, clap=load_clap(tiny_clap_dir)).model.state_dict()
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(carried[name], value), name


def _clap_with_window(window_s: float):  # noqa: ANN202 - ClapModel imports torch
    """A tiny random CLAP whose windows do not divide the captioner's 10 s segments."""
    from generative.clap.config import tiny_clap_config
    from generative.clap.model import ClapModel, build_random_clap

    config = tiny_clap_config()
    config["audio_cfg"]["clip_samples"] = round(window_s * config["audio_cfg"]["sample_rate"])
    return ClapModel.from_module(build_random_clap(config, seed=0), config, "clap-test:3s")


@pytest.mark.parametrize("window_s", [1.0, 3.0])
def test_one_clap_pass_gives_the_search_embedding_and_the_same_captions(
    tiny_clap,  # noqa: ANN001
    window_s: float,
) -> None:
    from generative.captioner.features import embed_and_segment, segment_features

    clap = tiny_clap if window_s == 1.0 else _clap_with_window(window_s)
    captioner = build_random_captioner(clap, seed=0)
    # Shorter than a window, a few windows, and long files whose segments cut windows of
    # their own (at 3 s: 9-10 s, then 10-13 s...) beside those of the whole file.
    waves = [tone(0, 0.4), tone(1, 5.0), np.concatenate([tone(2, 10.0), tone(3, 15.0)]),
             tone(4, 13.0)]  # fmt: skip
    meta = [{"title": "Dog bark"}, None, {"title": "kettle"}, {"file_name": "rain.wav"}]

    vectors, per_wave = embed_and_segment(clap, waves)
    assert np.array_equal(vectors, clap.embed_audio(waves))  # bit for bit: one embedding
    for one_pass, alone in zip(per_wave, segment_features(clap, waves), strict=True):
        assert [(s.start_s, s.end_s, s.rms) for s in one_pass] == [
            (s.start_s, s.end_s, s.rms) for s in alone
        ]
        for a, b in zip(one_pass, alone, strict=True):
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.embedding, b.embedding)
    embeddings, results = captioner.embed_and_caption(waves, meta)
    assert np.array_equal(embeddings, vectors)
    assert results == captioner.caption(waves, meta)
    empty, none = captioner.embed_and_caption([], [])
    assert empty.shape == (0, clap.dim) and none == []
