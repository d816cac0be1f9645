"""The corpus builder, on the `small` size: determinism, audio, captions, splits, demo library."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from generative.corpus.build import CorpusExistsError, build_corpus
from generative.corpus.demo import build_demo_library
from generative.corpus.manifest import SPLITS
from generative.corpus.recipes import Recipe, zipf_counts
from generative.corpus.recorded import opensfx_index
from generative.corpus.sources import ensure_sources

KEYS = {"id", "path", "captions", "labels", "source", "split", "duration", "sample_rate"}
KEYS |= {"meta", "params"}

# Words a caption may use for each attribute value (written here, not imported, so the
# test checks the captions against plain English rather than against the builder itself).
ATTRIBUTE_WORDS = {
    ("pitch", "high"): ("high", "shrill"),
    ("pitch", "low"): ("low", "deep"),
    ("rate", "fast"): ("fast", "rapid", "quick"),
    ("rate", "slow"): ("slow", "unhurried"),
    ("intensity", "heavy"): ("heavy", "intense", "strong"),
    ("intensity", "light"): ("light", "gentle", "weak"),
    ("loudness", "loud"): ("loud", "powerful"),
    ("loudness", "quiet"): ("quiet", "soft", "faint"),
    ("room", "large hall"): ("hall",),
    ("room", "small room"): ("room",),
    ("distance", "far"): ("distant", "far", "remote", "distance"),
    ("distance", "near"): ("close", "nearby"),
    ("background", "hum"): ("hum",),
    ("background", "hiss"): ("hiss", "hissing"),
    ("background", "rumble"): ("rumble",),
}
HELD_OUT_PROCEDURAL = {"heartbeat", "laser", "typing", "dripping"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "small"
    build_corpus(out, "small", seed=0, progress=False)
    return out


@pytest.fixture(scope="module")
def entries(corpus: Path) -> list[dict]:
    lines = (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_same_seed_rebuilds_the_same_manifest_over_a_half_written_build(corpus, tmp_path):
    again = tmp_path / "again"
    (again / "audio").mkdir(parents=True)
    (again / "audio" / "stale.flac").write_bytes(b"left over from a build that stopped")
    (again / ".build-in-progress").write_text("")
    build_corpus(again, "small", seed=0, progress=False)
    assert _sha256(again / "manifest.jsonl") == _sha256(corpus / "manifest.jsonl")
    assert not (again / "audio" / "stale.flac").exists()
    assert not (again / ".build-in-progress").exists()


def test_other_seed_gives_another_manifest(corpus, tmp_path):
    build_corpus(tmp_path / "seed1", "small", seed=1, progress=False)
    assert _sha256(tmp_path / "seed1" / "manifest.jsonl") != _sha256(corpus / "manifest.jsonl")


def test_finished_corpus_is_not_overwritten(corpus, tmp_path):
    with pytest.raises(CorpusExistsError, match="finished corpus"):
        build_corpus(corpus, "small", seed=0, progress=False)
    (tmp_path / "notes.txt").write_text("someone else's folder")
    with pytest.raises(CorpusExistsError, match="not a corpus"):
        build_corpus(tmp_path, "small", seed=0, progress=False)


def test_manifest_records_have_exactly_the_documented_fields(entries):
    assert 200 <= len(entries) <= 300
    for e in entries:
        assert set(e) == KEYS
        assert set(e["meta"]) == {"file_name", "folder", "title"}
        assert e["meta"]["file_name"].endswith(".flac") and e["meta"]["title"]
        assert e["sample_rate"] == 16000 and e["path"].startswith("audio/")
        assert re.fullmatch(r"c\d{6}", e["id"]) and e["labels"]
    assert len({e["id"] for e in entries}) == len(entries)
    assert len({(e["meta"]["folder"], e["meta"]["file_name"]) for e in entries}) == len(entries)


def test_every_clip_is_mono_16k_flac_of_the_stated_duration(corpus, entries):
    for e in entries:
        audio, rate = sf.read(corpus / e["path"], always_2d=True)
        assert rate == 16000 and audio.shape[1] == 1
        assert abs(len(audio) / rate - e["duration"]) < 1e-3
        assert abs(audio).max() > 0.01, f"{e['id']} is silent"
    durations = [e["duration"] for e in entries]
    assert sum(1.0 <= d <= 8.0 for d in durations) / len(durations) > 0.9


def test_every_clip_has_three_distinct_captions(entries):
    for e in entries:
        assert len(set(e["captions"])) >= 3 and len(set(e["captions"])) == len(e["captions"])


def test_captions_name_the_varied_attributes(entries):
    checked = Counter()
    for e in entries:
        text = " ".join(e["captions"]).lower()
        for (key, value), words in ATTRIBUTE_WORDS.items():
            if e["params"].get(key) == value:
                pattern = r"\b(" + "|".join(words) + r")\b"
                assert re.search(pattern, text), f"{e['id']}: {key}={value} unsaid in {text!r}"
                checked[key] += 1
        if e["source"] == "speech":
            assert e["params"]["language"] in text
            assert re.search(r"\b(man|woman|male|female)\b", text)
    assert set(checked) == {k for k, _ in ATTRIBUTE_WORDS}


def test_siren_caption_example(entries):
    sirens = [e for e in entries if e["params"].get("class") == "siren"]
    assert sirens and all("siren" in c for e in sirens for c in e["captions"][:2])


def test_every_source_and_split_is_present(entries):
    assert {e["source"] for e in entries} == {"procedural", "speech", "midi", "recorded"}
    assert {e["split"] for e in entries} == {"train", "val", "test", "ood"}
    ood_sources = {e["source"] for e in entries if e["split"] == "ood"}
    assert {"procedural", "speech", "recorded"} <= ood_sources
    assert any(len(e["labels"]) == 2 and "+" in e["params"]["class"] for e in entries)


def test_ood_classes_never_reach_train_val_or_test(corpus, entries):
    classes = json.loads((corpus / "classes.json").read_text())
    ood = set(classes["ood"])
    assert HELD_OUT_PROCEDURAL | {"italian", "dutch", "whispering"} <= ood
    in_domain = {label for e in entries if e["split"] != "ood" for label in e["labels"]}
    assert not ood & in_domain
    deepin = [e for e in entries if e["params"].get("package") == "deepin-sound-theme"]
    assert deepin and all(e["split"] == "ood" for e in deepin)


def test_classes_and_stats_describe_the_manifest(corpus, entries):
    classes = json.loads((corpus / "classes.json").read_text())
    stats = json.loads((corpus / "stats.json").read_text())
    counts = Counter(label for e in entries for label in e["labels"])
    assert classes["counts"] == dict(counts) and stats["per_class"] == classes["counts"]
    assert classes["head"] and classes["tail"] and not set(classes["head"]) & set(classes["tail"])
    assert min(counts[c] for c in classes["head"]) > max(counts[c] for c in classes["tail"])
    assert stats["clips"] == len(entries)
    assert stats["per_split"]["ood-real"] == 0  # small needs no recorded Debian package
    splits = SPLITS
    assert stats["per_split"] == {s: sum(e["split"] == s for e in entries) for s in splits}
    assert "| all |" in (corpus / "stats.md").read_text()


def test_zipf_counts_are_long_tailed():
    recipes = [Recipe(f"r{i}", False) for i in range(40)]
    counts = zipf_counts(recipes, 4000, "group", exponent=0.9, minimum=10)
    assert sum(counts) == 4000 and min(counts) >= 10
    assert max(counts) > 10 * min(counts)
    assert counts == zipf_counts(recipes, 4000, "group", exponent=0.9, minimum=10)


def test_demo_library_places_held_out_clips_by_folder_and_file_name(corpus, entries, tmp_path):
    library = tmp_path / "library"
    count = build_demo_library(corpus, library, max_clips=15, seed=3)
    files = sorted(p for p in library.rglob("*") if p.is_file())
    assert count == 15 == len(files)
    held_out = {
        Path(e["meta"]["folder"]) / e["meta"]["file_name"]
        for e in entries
        if e["split"] in ("test", "ood", "ood-real")
    }
    placed = {p.relative_to(library) for p in files}
    assert placed <= held_out
    real = [Path(e["meta"]["folder"]) / e["meta"]["file_name"] for e in entries
            if e["split"] == "ood-real"]  # fmt: skip
    assert set(real[:15]) <= placed  # every real recording first
    assert all(sf.info(p).samplerate == 16000 for p in files)


def test_opensfx_cat_is_parsed_with_titles():
    index = opensfx_index()
    assert len(index) == 73
    assert index[0x06][0].startswith('"Ship horn"')


def test_sources_are_installed():
    ensure_sources(install=False)
