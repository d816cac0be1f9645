"""Recorded Debian sources: path rules, labels from names, dedup, group splits, determinism.

Nothing here downloads: a stand-in tree of two packages is written by the tests, with real
audio files, in the layout `dpkg-deb -x` leaves in the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from generative.corpus import build
from generative.corpus.catalogue import (
    _asterisk_texts,
    _stamp_texts,
    fingerprint,
    remove_near_duplicates,
)
from generative.corpus.debian import Unpacked, unpacked
from generative.corpus.field import OOD_REAL_PACKAGES, split_of
from generative.corpus.names import drop_reason, group_key, name_sound, segment
from generative.corpus.words import MODIFIERS, VOCABULARY

# Real paths from the packages (corpus-sources.md and the unpacked trees) -> labels, phrase.
NAMES = [
    (
        "mods/default/sounds/default_gravel_footstep.1.ogg",
        ("footstep", "gravel"),
        "gravel footstep",
    ),
    ("mods/doors/sounds/doors_steel_door_open.ogg", ("door", "steel", "open"), "steel door open"),
    ("mods/fire/sounds/fire_extinguish_flame.2.ogg", ("fire", "extinguishing", "flame"), None),
    (
        "classical/battle_land/battle_land_04_cavalry_saber_charge.mp3",
        ("charge", "cavalry", "sabre"),
        "cavalry sabre charge",
    ),
    (
        "future/placed_infrastructure/placed_infrastructure_01_sawing_wood.mp3",
        ("wood", "sawing"),
        "sawing wood",
    ),
    ("data/wav/misc/policecar.wav", ("car", "police"), "police car"),
    ("data/wav/misc/oceanwaves.wav", ("waves", "ocean"), "ocean waves"),
    ("data/wav/explosions/napalm.wav", ("explosion", "napalm"), "napalm explosion"),
    ("abcs/all/noises/hedgehog.ogg", ("hedgehog",), "hedgehog"),
    ("stamps/household/vacuum_cleaner.ogg", ("cleaner", "vacuum"), "vacuum cleaner"),
    ("lugaru/Sounds/FootStepSnow2.ogg", ("footstep", "snow"), "snow footstep"),
    ("lugaru/Sounds/KnifeSheathe.ogg", ("knife", "sheathing"), "knife sheathing"),
    ("lugaru/Sounds/BushRustle.ogg", ("rustle", "bush"), "bush rustle"),
    ("soundfx/environment/cave_droplets_loop.ogg", ("drips", "cave"), "cave drips"),
    ("sounds/helicopter_engine_start.wav", ("engine", "helicopter", "start"), None),
    ("lincity-ng/sounds/TraficHigh1.wav", ("traffic",), "heavy traffic"),
    ("lincity-ng/sounds/SportsCroud3.wav", ("crowd", "sports"), "sports crowd"),
    ("teeworlds/data/audio/foley_foot_left-01.wv", ("footstep",), "footstep"),
    ("teeworlds/data/audio/wp_hammer_swing-02.wv", ("hammer", "swing"), None),
    ("ufoai/base/0snd.pk3/sound/footsteps/gravel1.ogg", ("footstep", "gravel"), "gravel footstep"),
    ("0snd.pk3/sound/misc/breakglass3.ogg", ("glass", "breaking"), "glass breaking"),
    ("sound/ambience/nightcrickets.ogg", ("crickets", "night"), "night crickets"),
    ("sounds/player/swimstep2.ogg", ("stroke", "swimming"), "swimming stroke"),
    ("widelands/data/sound/woodcutting/tree_falling_00.ogg", ("falling", "tree"), None),
]
_S3D = "usr/share/games/scorched3d/data/globalmods"
_WL = "usr/share/games/widelands/data/sound"
_LC = "usr/share/games/lincity-ng/sounds"
# The held-out packages' problem names: modifiers, fragments, compounds, LinCity-NG tiles.
NAMES_OOD_REAL = [
    # Modifiers stay in the phrase, in front, and are never a label.
    (f"{_S3D}/none/data/wav/explosions/small.wav", ("explosion",), "small explosion"),
    (f"{_S3D}/none/data/wav/explosions/xlarge.wav", ("explosion",), "very large explosion"),
    (f"{_S3D}/none/data/wav/shoot/large.wav", ("shot",), "large shot"),
    (f"{_WL}/woodcutting/fast_woodcutting_00.ogg", ("woodcutting",), "fast woodcutting"),
    (f"{_WL}/barbarians/taverns/biginn_00.ogg", ("inn",), "big inn"),
    (f"{_LC}/MarketEmpty1.wav", ("market",), "empty market"),
    (f"{_LC}/TraficLow2.wav", ("traffic",), "light traffic"),
    # Fragments are expanded by the dictionary, or dropped.
    (f"{_S3D}/none/data/wav/misc/f16_1.wav", ("fighter jet",), "fighter jet"),
    (f"{_S3D}/none/data/wav/misc/f18_2.wav", ("fighter jet",), "fighter jet"),
    (f"{_S3D}/none/data/wav/misc/t38.wav", ("jet",), "jet"),
    (f"{_S3D}/apoc/data/wav/explosions/exp.wav", ("explosion",), "explosion"),
    (f"{_S3D}/apoc/data/wav/explosions/bhit.wav", ("explosion", "hit"), "hit explosion"),
    (f"{_S3D}/apoc/data/wav/explosions/empsmall.wav", ("explosion", "zap"), None),
    (f"{_S3D}/none/data/wav/misc/para.wav", ("parachute",), "parachute"),
    (f"{_WL}/farm/ox_00.ogg", ("oxen",), "oxen"),
    # Compounds are split against the vocabulary; misleading halves stay together.
    (f"{_S3D}/apoc/data/wav/misc/carhorn3.wav", ("horn", "car"), "car horn"),
    (f"{_S3D}/none/data/wav/misc/birdchirp1.wav", ("bird", "chirp"), "bird chirp"),
    (f"{_S3D}/apoc/data/wav/misc/cheeringloop.wav", ("cheering",), "cheering"),
    (f"{_S3D}/apoc/data/wav/misc/citysounds.wav", ("city",), "city"),
    (f"{_S3D}/none/data/wav/movement/tankmove.wav", ("move", "tank"), "tank move"),
    (
        f"{_S3D}/apoc/data/wav/explosions/lightningbolt.wav",
        ("explosion", "lightning", "bolt"),
        "lightning bolt explosion",
    ),
    (f"{_S3D}/apoc/data/wav/shoot/machinegun.wav", ("shot", "machine gun"), "machine gun shot"),
    (f"{_S3D}/apoc/data/wav/misc/firetruck.wav", ("fire truck",), "fire truck"),
    (f"{_WL}/atlanteans/saw/benchsaw_01.ogg", ("bench saw",), "bench saw"),
    (f"{_WL}/atlanteans/saw/sawing_00.ogg", ("sawing",), "sawing"),
    (f"{_WL}/barbarians/stonegrind.ogg", ("grinding", "stone"), "stone grinding"),
    # LinCity-NG tiles: what the place sounds like.
    (f"{_LC}/ResidentialHigh1.wav", ("neighbourhood ambience",), "busy neighbourhood ambience"),
    (f"{_LC}/ResidentialLowLow1.wav", ("neighbourhood ambience",), None),
    (f"{_LC}/PowerCoalFull.wav", ("hum", "power station"), "loud power station hum"),
    (f"{_LC}/PowerSolar2.wav", ("hum", "power station"), "solar power station hum"),
    (f"{_LC}/CoalMine1.wav", ("coal mine",), "coal mine"),
    (f"{_LC}/Mill2.wav", ("mill",), "mill"),
    (f"{_LC}/Blacksmith3.wav", ("hammering", "blacksmith"), "blacksmith hammering"),
    (f"{_LC}/ParklandPlane1.wav", ("park ambience",), "park ambience"),
    (f"{_LC}/Health4.wav", ("hospital ambience",), "hospital ambience"),
    (f"{_LC}/WindMillHTech2.wav", ("wind turbine",), "wind turbine"),
    # Names that were right stay as they were.
    (f"{_S3D}/none/data/wav/misc/dog2.wav", ("dog",), "dog"),
    (f"{_S3D}/none/data/wav/misc/oceanwaves.wav", ("waves", "ocean"), "ocean waves"),
    (f"{_LC}/RocketTakeoff1.wav", ("takeoff", "rocket"), "rocket takeoff"),
    (f"{_WL}/animals/crickets1_00.ogg", ("crickets",), "crickets"),
    ("usr/share/games/widelands/data/world/critters/duck/duck_01.ogg", ("duck",), "duck"),
]
# Other packages: modifiers, two-letter words and compounds, same rules.
NAMES_OTHERS = [
    (
        "usr/share/games/minetest/games/minetest_game/mods/fire/sounds/fire_large.ogg",
        ("fire",),
        None,
    ),
    ("flare/mods/fantasycore/soundfx/inventory/inventory_heavy.ogg", ("inventory",), None),
    ("usr/share/games/searchandrescue/sounds/gear_up.wav", ("gear",), "gear up"),
    ("redeclipse/data/sounds/ambience/waterfall_huge.ogg", ("waterfall",), "huge waterfall"),
    ("ufoai/base/0snd.pk3/sound/weapons/laser-small.ogg", ("laser",), "small laser"),
    ("teeworlds/data/audio/foley_dbljump-01.wv", ("jump",), "double jump"),
    ("redeclipse/data/sounds/player/concstep3.ogg", ("footstep", "concrete"), "concrete footstep"),
    ("ufoai/base/0snd.pk3/sound/soldiers/femaledeath01.ogg", ("death", "female"), "female death"),
    ("usr/share/tuxpaint/stamps/naturalforces/lightningbolt.ogg", ("bolt", "lightning"), None),
]
# Compounds left out of the vocabulary so that they split.
SPLIT = {
    "carhorn": ["car", "horn"],
    "birdchirp": ["bird", "chirp"],
    "benchsaw": ["bench", "saw"],
    "cheeringloop": ["cheering", "loop"],
    "citysounds": ["city", "sounds"],
    "tankmove": ["tank", "move"],
    "lightningbolt": ["lightning", "bolt"],
    "machinegun": ["machine", "gun"],
    "empsmall": ["emp", "small"],
    "bloodspiderwalk": ["blood", "spider", "walk"],
}

KEPT = [
    "usr/share/games/widelands/data/sound/farm/scythe_00.ogg",
    "usr/share/games/btanks/data/sounds/engine-start.ogg",
    "usr/share/games/megaglest/tilesets/winter/sounds/wind.ogg",
    "usr/share/tuxpaint/stamps/animals/birds/rooster.ogg",
]
DROPPED = {
    "usr/share/games/btanks/data/tunes/glory.ogg": "music",
    "usr/share/games/supertuxkart/data/music/celtic_fast.ogg": "music",
    "usr/share/games/flare/mods/fantasycore/music/forest_theme.ogg": "music",
    "usr/share/games/lugaru/Sounds/Music3.ogg": "music",
    "assets/sounds/ww2/required_your_turn_series_British/x_anthem.mp3": "music",
    "usr/share/games/teeworlds/data/audio/vo_teefault_pain_short-03.wv": "voice line",
    "megaglest/techs/megapack/factions/norsemen/units/swordman/sounds/swordman_ack1.wav": (
        "unit voice line"
    ),
    "megaglest/techs/megapack/commondata/sounds/archer_select8.wav": "unit voice line",
    "megaglest/techs/megapack/factions/persian/units/magician/sounds/ack3.wav": "unit voice line",
    "redeclipse/data/sounds/voices/announcer_flag.ogg": "music",
    "redeclipse/data/sounds/player/voices/pain1.ogg": "voice line",
    "usr/share/tuxpaint/stamps/symbols/math/7_el.ogg": "spoken letter or number",
    "usr/share/tuxpaint/stamps/food/fruit/apple_fr.ogg": "spoken stamp name",
    "usr/share/games/ufoai/base/0snd.pk3!sound/ui/button.ogg": "interface",
    "supertuxkart/data/music/Gran_Paradiso_Unused_-_TuxKart_5a_Gowns_Bow_Remix.ogg": "music",
    "supertuxkart/data/sfx/last_lap_fanfare.ogg": "music",
    "flare/mods/fantasycore/soundfx/npcs/female_merchant_03.ogg": "voice line",
    "supertuxkart/data/tracks/sara_airport/sara_airport_pa.ogg": "voice line",
    "usr/share/games/lincity-ng/sounds/WindowOpen.wav": "interface",
    "usr/share/games/widelands/data/sound/message_00.ogg": "interface",
    "usr/share/games/widelands/data/sound/military/under_attack.ogg": "interface",
}


@pytest.mark.parametrize(("path", "labels", "phrase"), NAMES)
def test_names_become_labels_and_phrases(path, labels, phrase):
    naming = name_sound(path)
    assert naming.labels == labels
    assert naming.phrase == (phrase or " ".join(naming.phrase.split()))
    if phrase is None:
        assert set(naming.phrase.split()) == set(labels)


@pytest.mark.parametrize(("path", "labels", "phrase"), NAMES_OOD_REAL + NAMES_OTHERS)
def test_modifiers_fragments_compounds_and_places_are_not_labels(path, labels, phrase):
    naming = name_sound(path)
    assert naming.labels == labels
    if phrase is not None:
        assert naming.phrase == phrase
    for label in naming.labels:
        assert len(label) > 2 and label not in MODIFIERS, label
        assert all(word in naming.phrase.split() for word in label.split()), label


def test_compounds_split_into_vocabulary_words():
    for word, pieces in SPLIT.items():
        assert word not in VOCABULARY
        assert segment(word) == pieces, word
    # Known words, short words and words that do not split whole stay as they are.
    for word in ("hedgehog", "diesel", "waterfall", "sawmill", "woodcutting", "bee", "zzyzxq"):
        assert segment(word) == [word]


def test_lincity_tiles_all_say_what_they_sound_like():
    names = ["ResidentialMed1", "Commune2", "Shanty3", "Tip1", "Substation3", "SubstationOn"]
    names += ["PowerCoalEmpty", "PowerCoalLow", "PowerLine1", "Green1", "DirtTrack2"]
    tiles = [f"{_LC}/{name}.wav" for name in names]
    building_words = {"residential", "power", "coal", "commune", "shanty", "tip", "substation"}
    building_words |= {"green", "track", "dirt", "line"}
    for path in tiles:
        naming = name_sound(path)
        assert naming.labels, path
        assert not set(naming.labels) & building_words, (path, naming.labels)


def test_folders_give_context():
    assert name_sound("usr/share/tuxpaint/stamps/animals/birds/rooster.ogg").context == (
        "animals/birds"
    )


def test_path_rules_drop_music_voices_and_interface_sounds():
    assert len(DROPPED) >= 10
    for path, reason in DROPPED.items():
        assert drop_reason(path) == reason, path
    for path in KEPT:
        assert drop_reason(path) is None, path


def test_variations_of_one_recording_share_a_group():
    steps = {group_key("p", f"sounds/step{i}.ogg") for i in range(1, 6)}
    gravel = {group_key("p", f"sounds/default_gravel_footstep.{i}.ogg") for i in (1, 2, 3)}
    tee = {group_key("p", f"audio/foley_foot_left-0{i}.wv") for i in (1, 2, 3)}
    assert len(steps) == len(gravel) == len(tee) == 1
    assert group_key("p", "sounds/step1.ogg") != group_key("p", "sounds/jump1.ogg")


def test_stamp_and_prompt_texts_are_read(tmp_path):
    txt = tmp_path / "sheep.txt"
    txt.write_text("A sheep.\nfr.utf8=Un mouton.\nes.utf8=Una oveja.\n", encoding="utf-8")
    assert _stamp_texts(txt) == {"en": "A sheep.", "fr": "Un mouton.", "es": "Una oveja."}
    doc = tmp_path / "usr/share/doc/asterisk-core-sounds-fr"
    doc.mkdir(parents=True)
    import gzip

    (doc / "core-sounds-fr.txt.gz").write_bytes(
        gzip.compress(
            "; header\nactivated: activé\nagent-pass: Composez votre mot de passe.\n".encode()
        )
    )
    texts = _asterisk_texts(Unpacked("asterisk-core-sounds-fr", "1", tmp_path), "fr")
    assert texts == {"activated": "activé", "agent-pass": "Composez votre mot de passe."}


def _burst(seed: int, seconds: float = 0.0, rate: int = 16000) -> np.ndarray:
    """A decaying noisy tone; each seed has its own length, so no two are near duplicates."""
    rng = np.random.default_rng(seed)
    n = int((seconds or 0.4 + 0.037 * seed) * rate)
    env = np.exp(-np.linspace(0, 8, n)) * (1 + 0.5 * np.sin(np.linspace(0, 20 * seed, n)))
    tone = np.sin(2 * np.pi * (200 + 150 * seed) * np.arange(n) / rate)
    return 0.6 * env * (0.6 * rng.standard_normal(n) + 0.4 * tone)


def test_near_duplicates_are_found_by_decoded_audio():
    x = _burst(1)
    reencoded = x * 0.8 + 0.001 * np.random.default_rng(9).standard_normal(len(x))
    t = np.arange(len(x)) / 16000
    other = 0.5 * np.sin(2 * np.pi * (300 + 2000 * t) * t)  # same length, another sound
    entries = [
        (name, {"duration": round(len(a) / 16000, 3), "fingerprint": fingerprint(a)})
        for name, a in (("a", x), ("b", reencoded), ("c", other))
    ]
    kept, dropped = remove_near_duplicates(entries)  # type: ignore[arg-type]
    assert [k[0] for k in kept] == ["a", "c"] and dropped == ["b"]


def _write(path: Path, audio: np.ndarray, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate)


def _stand_in_cache(cache: Path) -> None:
    """Two tiny packages laid out as dpkg-deb -x leaves them, with real audio."""
    mt = cache / "root" / "minetest-data"
    sounds = mt / "usr/share/games/minetest/games/minetest_game/mods/default/sounds"
    for i in (1, 2, 3):
        _write(sounds / f"default_gravel_footstep.{i}.ogg", _burst(i))
        _write(sounds / f"default_wood_footstep.{i}.ogg", _burst(10 + i))
    _write(sounds / "default_dig_crumbly.ogg", _burst(20))
    _write(sounds / "default_place_node.ogg", _burst(21))
    _write(sounds / "default_break_glass.1.ogg", _burst(22))
    _write(sounds / "default_dug_metal.1.ogg", _burst(23))
    # Later in path order: an exact copy and a near copy (another rate and format); then
    # music and a long ambience.
    copy = mt / "usr/share/games/minetest/games/minetest_game/mods/xtra/sounds"
    (copy).mkdir(parents=True)
    (copy / "default_gravel_footstep.1.ogg").write_bytes(
        (sounds / "default_gravel_footstep.1.ogg").read_bytes()
    )
    _write(copy / "gravel_again.wav", np.repeat(_burst(2), 2) * 0.9, rate=32000)
    _write(mt / "usr/share/games/minetest/music/theme.ogg", _burst(30, seconds=2.0))
    rain = np.random.default_rng(5).standard_normal(16000 * 25) * 0.1
    env_sounds = mt / "usr/share/games/minetest/games/minetest_game/mods/env_sounds/sounds"
    _write(env_sounds / "env_sounds_rain.ogg", rain)
    doc = mt / "usr/share/doc/minetest-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: CC-BY-SA-3.0\n")
    (mt / ".version").write_text("5.6.1-test\n")
    wl = cache / "root" / "widelands-data"
    farm = wl / "usr/share/games/widelands/data/sound/farm"
    for i in range(3):
        _write(farm / f"scythe_0{i}.ogg", _burst(40 + i))
    (wl / ".version").write_text("2:1.1-test\n")


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("recorded")
    cache = root / "cache"
    _stand_in_cache(cache)
    sizes = {"stand-in": {"field": 40, "field-speech": 0}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(build, "SIZES", {**build.SIZES, **sizes})
        for name in ("first", "second"):
            build.build_corpus(
                root / name, "stand-in", seed=0, progress=False, install=False, debian_cache=cache
            )
    return root / "first", root / "second", cache


def _entries(corpus: Path) -> list[dict]:
    lines = (corpus / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_stand_in_manifest_is_deterministic_and_from_the_cache(stand_in):
    first, second, cache = stand_in
    digest = [hashlib.sha256((c / "manifest.jsonl").read_bytes()).hexdigest() for c in stand_in[:2]]
    assert digest[0] == digest[1]
    assert set(unpacked(cache)) == {"minetest-data", "widelands-data"}
    assert len(list(cache.glob("catalogue-*.json"))) == 1  # the second build reused it


def test_stand_in_keeps_effects_and_drops_music_and_duplicates(stand_in):
    entries = _entries(stand_in[0])
    paths = {e["meta"]["original_path"].rsplit("/", 1)[-1] for e in entries}
    assert "default_gravel_footstep.1.ogg" in paths and "scythe_00.ogg" in paths
    assert "theme.ogg" not in paths and "gravel_again.wav" not in paths
    originals = {e["meta"]["original_path"] for e in entries}
    assert not any("/xtra/" in p for p in originals)
    rain = {e["meta"]["segment_start_s"] for e in entries if "rain" in e["meta"]["original_path"]}
    assert rain <= {0.0, 10.0, 20.0} and len(rain) >= 2
    mt = [e for e in entries if e["meta"]["package"] == "minetest-data"]
    assert mt and all(e["meta"]["package_version"] == "5.6.1-test" for e in mt)
    assert all(e["meta"]["licence"] == "CC-BY-SA-3.0" for e in mt)
    gravel = [e for e in entries if e["labels"][:2] == ["footstep", "gravel"]]
    assert gravel and all(len(set(e["captions"])) >= 3 for e in entries)
    assert any("gravel footstep" in c for e in gravel for c in e["captions"])
    assert any("footsteps on gravel" in c for e in gravel for c in e["captions"])


def test_stand_in_clips_are_mono_16k_and_at_most_ten_seconds(stand_in):
    for e in _entries(stand_in[0]):
        audio, rate = sf.read(stand_in[0] / e["path"], always_2d=True)
        assert rate == 16000 and audio.shape[1] == 1 and len(audio) <= 10 * rate
        assert np.abs(audio).max() > 0.01


def test_groups_never_straddle_splits_and_ood_real_is_whole_packages(stand_in):
    entries = _entries(stand_in[0])
    splits_by_group: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        splits_by_group[e["meta"]["group"]].add(e["split"])
    assert all(len(s) == 1 for s in splits_by_group.values())
    for e in entries:
        held = e["meta"]["package"] in OOD_REAL_PACKAGES
        assert (e["split"] == "ood-real") == held
        assert not held or e["params"]["variant"] == "plain"
        if "background_recording" in e["params"]:
            assert e["split"] != "ood-real"


def test_group_splits_follow_the_group_name_only():
    from generative.corpus.catalogue import Segment

    def segment(path: str, package: str = "minetest-data") -> Segment:
        return Segment(
            key=path, package=package, version="1", licence="x", path=path,
            group=group_key(package, path), audio="", start_s=0.0, length_s=1.0,
            kind="effect", labels=["footstep"], phrase="footstep", context="",
        )  # fmt: skip

    words = [f"{a}{b}" for a in "abcdefghij" for b in "klmnopqrst"]
    names = [f"sounds/{w}_step_{i}.ogg" for w in words for i in (1, 2, 3)]
    by_group: dict[str, set[str]] = defaultdict(set)
    for name in names:
        by_group[group_key("minetest-data", name)].add(split_of(segment(name)))
    assert all(len(s) == 1 for s in by_group.values())
    counts = [s.pop() for s in by_group.values()]
    assert 0.65 < counts.count("train") / len(counts) < 0.95 and "val" in counts
    assert split_of(segment("a/cow.ogg", "widelands-data")) == "ood-real"
