"""A sound's words on SQLite and PostgreSQL: the 0002 migration over an existing catalog,
the full-text index kept in step with every write, and who may write which words."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text

from core.catalog import OutboxEntry, Sound
from core.db import MIGRATIONS_DIR, Catalog, make_engine
from core.vector_index import SearchFilter
from core.words import (
    CaptionWords,
    check_tags,
    edit_words,
    machine_tags,
    offer_caption,
    query_terms,
    words_search,
)


def make_sound(
    digest: str, title: str, caption: str | None = None, tags: list[str] | None = None, **kw: object
) -> Sound:
    return Sound(
        content_hash=digest * 32,
        size=10,
        duration=float(kw.get("duration", 1.0)),  # type: ignore[arg-type]
        sample_rate=16000,
        channels=1,
        format="wav",
        title=title,
        caption=caption,
        tags=tags or [],
        source=str(kw.get("source", "library")),
    )


def add(catalog: Catalog, *sounds: Sound) -> list[int]:
    with catalog.session() as session:
        session.add_all(sounds)
        session.flush()
        return [s.id for s in sounds]


def found(catalog: Catalog, query: str, flt: SearchFilter | None = None) -> list[int]:
    with catalog.session() as session:
        return [sound_id for sound_id, _ in words_search(session, query, 20, flt)]


def _alembic(url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def test_upgrade_from_0001_keeps_sounds_and_indexes_their_words(catalog_url: str) -> None:
    _alembic(catalog_url, "0001")
    engine = make_engine(catalog_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO sounds (content_hash, size, duration, sample_rate, channels, format,"
                " title, caption, tags, source, created_at, updated_at) VALUES ('h1', 1, 1.0,"
                " 16000, 1, 'wav', 'door creak 02', NULL, '[\"doors\"]', 'library',"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    catalog = Catalog(catalog_url)  # upgrades to head
    try:
        with catalog.session() as session:
            sound = session.scalar(select(Sound))
            assert sound is not None
            assert (sound.title_by, sound.tags_by, sound.caption_by) == ("metadata",) * 2 + (None,)
        assert found(catalog, "creaking door") == [sound.id]
        assert found(catalog, "doors") == [sound.id]
    finally:
        catalog.dispose()
    _alembic(catalog_url, "0001", down=True)  # and back down, leaving the rows
    _alembic(catalog_url, "head")


def test_words_in_title_tags_and_caption_are_found(catalog: Catalog) -> None:
    door, rain, bell = add(
        catalog,
        make_sound("a", "clip 01", "a heavy wooden door creaking shut", ["interior"]),
        make_sound("b", "clip 02", "rain falling on a tin roof", ["weather", "rain"]),
        make_sound("c", "bell", None, ["church-bell"], duration=5.0, source="upload"),
    )
    assert found(catalog, "wooden door") == [door]
    assert found(catalog, "creak") == [door]  # stemmed: creaking ~ creak
    assert found(catalog, "rain") == [rain]
    assert found(catalog, "church") == [bell]
    assert found(catalog, "the a of") == []  # nothing but stop words
    assert set(found(catalog, "rain door bell")) == {door, rain, bell}
    # Tags count more than captions: "rain" is a tag of one and not in the other's caption.
    assert found(catalog, "weather roof") == [rain]
    # Filters: duration, source, tags.
    assert found(catalog, "rain door bell", SearchFilter(min_duration=2.0)) == [bell]
    assert found(catalog, "rain door bell", SearchFilter(source="library")) in (
        [door, rain],
        [rain, door],
    )
    assert found(catalog, "rain door bell", SearchFilter(tags=("weather",))) == [rain]


def test_edits_and_deletions_reach_the_words_index_at_once(catalog: Catalog) -> None:
    (sound_id,) = add(catalog, make_sound("d", "clip 03", "a dog barking", ["animals"]))
    with catalog.session() as session:
        sound = session.get(Sound, sound_id)
        assert sound is not None
        changed = edit_words(session, sound, caption="a cat purring", tags=["cats", "purr"])
        assert changed == ["caption", "tags"]
    assert found(catalog, "dog") == []
    assert found(catalog, "purring cat") == [sound_id]
    with catalog.session() as session:
        # A tag change reaches the vector index's payload through the outbox.
        upserts = select(func.count()).where(OutboxEntry.sound_id == sound_id)
        assert session.scalar(upserts) == 1
        session.delete(session.get(Sound, sound_id))
    assert found(catalog, "purring cat") == []


def test_people_win_over_the_captioner(catalog: Catalog) -> None:
    mine, untouched = add(
        catalog,
        make_sound("e", "thunder take 3", "a distant thunder roll", ["storm"]),
        make_sound("f", "clip 05", None, []),
    )
    words = CaptionWords(
        "an engine idling", ["Engine", "car idling", "motor!"], "cap-1", [{"start_s": 0}]
    )
    with catalog.session() as session:
        sound = session.get(Sound, mine)
        assert sound is not None
        edit_words(session, sound, caption="a distant thunder roll, recorded by me")
        # Folder tags are the library's words: the captioner does not replace them either.
        assert offer_caption(session, sound, words) == []
        assert sound.caption_model == "cap-1" and sound.caption_segments == [{"start_s": 0}]
        other = session.get(Sound, untouched)
        assert other is not None
        assert offer_caption(session, other, words) == ["caption", "tags"]
        assert other.tags == ["engine", "car-idling"] and other.tags_by == "captioner"
        # Re-captioning replaces the captioner's own words.
        again = CaptionWords("a motor", ["motor"], "cap-2")
        assert offer_caption(session, other, again) == ["caption", "tags"]
    assert found(catalog, "thunder") == [mine]
    assert found(catalog, "engine") == []
    assert found(catalog, "motor") == [untouched]
    with catalog.session() as session:
        sound = session.get(Sound, mine)
        assert sound is not None and sound.caption_by == "person"
        assert sound.caption == "a distant thunder roll, recorded by me"
        # A person clearing a caption hands it back to the captioner.
        edit_words(session, sound, caption=None)
        assert offer_caption(session, sound, words) == ["caption"]


def test_tag_rules() -> None:
    assert check_tags(["door", "glass-breaking", "8-bit", "café"]) == [
        "door",
        "glass-breaking",
        "8-bit",
        "café",
    ]
    for bad in (["Door"], ["two words"], ["under_score"], ["-x"], [""], ["a" * 49], ["x", "x"]):
        with pytest.raises(ValueError):
            check_tags(bad)
    with pytest.raises(ValueError, match="at most"):
        check_tags([f"t{i}" for i in range(31)])
    assert machine_tags([" Dog Barking ", "dog_barking", "ok", "!!"]) == ["dog-barking", "ok"]
    assert query_terms("The sound of a Door, creaking!") == ["door", "creaking"]
