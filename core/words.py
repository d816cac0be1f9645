"""A sound's words: who wrote its title, caption and tags, and the full-text index over them.

People's words win. Each field records its author (`WordSource`): a person (through the API),
the library's own names (`metadata`: file and folder names) or the captioner. A machine never
overwrites a person's words, and the captioner never overwrites the library's names; an empty
field is anyone's to fill. Tags are also in the vector index's payload (for the `tag` filter),
so a change of tags appends an outbox entry in the same transaction.

The full-text index (SQLite FTS5 or a PostgreSQL tsvector column, migration 0002) follows
every write to `sounds` inside the database itself, so an edit is searchable when it commits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.catalog import OutboxEntry, Sound, WordSource
from core.vector_index import SearchFilter

MAX_TITLE = 512
MAX_CAPTION = 2000
MAX_TAGS = 30
MAX_TAG_LENGTH = 48
# Lowercase words joined by single hyphens: "door", "glass-breaking", "8-bit".
TAG_PATTERN = re.compile(r"^[^\W_]+(?:-[^\W_]+)*$")

# Higher outranks lower; equal may replace (the captioner re-captioning its own words).
_RANK = {WordSource.captioner.value: 1, WordSource.metadata.value: 2, WordSource.person.value: 3}


def check_tag(tag: str) -> str:
    """A person's tag as given, or ValueError saying what is wrong with it."""
    if not tag:
        raise ValueError("a tag cannot be empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"tag {tag[:20]!r}... is longer than {MAX_TAG_LENGTH} characters")
    if tag != tag.lower() or not TAG_PATTERN.match(tag):
        raise ValueError(
            f"tag {tag!r} must be lowercase words joined by hyphens, like 'door' or "
            "'glass-breaking' (no spaces, underscores or other punctuation)"
        )
    return tag


def check_tags(tags: Sequence[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
    checked = [check_tag(tag) for tag in tags]
    repeated = sorted({tag for tag in checked if checked.count(tag) > 1})
    if repeated:
        raise ValueError(f"tags repeat: {', '.join(repeated)}")
    return checked


def machine_tags(tags: Iterable[str]) -> list[str]:
    """A model's tags in the people's format: lowercased, spaces to hyphens, bad ones dropped."""
    out: list[str] = []
    for raw in tags:
        tag = unicodedata.normalize("NFC", str(raw)).strip().lower()
        tag = re.sub(r"[\s_]+", "-", tag).strip("-")
        if tag and len(tag) <= MAX_TAG_LENGTH and TAG_PATTERN.match(tag) and tag not in out:
            out.append(tag)
    return out[:MAX_TAGS]


def may_write(author: str, current_by: str | None, empty: bool) -> bool:
    """Whether `author` may write a field now written by `current_by`."""
    if empty or current_by is None:
        return True
    return _RANK.get(author, 0) >= _RANK.get(current_by, 0)


def mark_for_index(session: Session, sound_id: int) -> None:
    """The vector index's payload of this sound (its tags) must follow the catalog."""
    session.add(OutboxEntry(sound_id=sound_id, op="upsert"))


@dataclass
class CaptionWords:
    """What a captioner said about one sound."""

    caption: str
    tags: list[str]
    model_id: str
    segments: list[dict[str, Any]] = field(default_factory=list)


def offer_caption(
    session: Session, sound: Sound, words: CaptionWords, index: bool = True
) -> list[str]:
    """Write the captioner's words where it may; returns the fields it wrote. `index=False`
    when this transaction already appends an upsert of the sound to the outbox.

    The segments and the captioner's model id are always recorded (they are the captioner's
    alone); the caption and tags only where no person, and for tags no library name, wrote them.
    """
    written = []
    caption = words.caption.strip()[:MAX_CAPTION]
    author = WordSource.captioner.value
    if caption and may_write(author, sound.caption_by, not sound.caption):
        sound.caption, sound.caption_by = caption, author
        written.append("caption")
    tags = machine_tags(words.tags)
    if tags and may_write(author, sound.tags_by, not sound.tags):
        if list(sound.tags) != tags:
            sound.tags = tags
            if index:
                mark_for_index(session, sound.id)
        sound.tags_by = author
        written.append("tags")
    sound.caption_segments = list(words.segments) or None
    sound.caption_model = words.model_id
    return written


_UNSET: Any = object()


def edit_words(
    session: Session,
    sound: Sound,
    *,
    title: str = _UNSET,
    caption: str | None = _UNSET,
    tags: Sequence[str] = _UNSET,
) -> list[str]:
    """A person's edit; returns the fields it changed. A caption set to None is cleared and
    handed back to the captioner (the next captioning fills it)."""
    person = WordSource.person.value
    changed = []
    if title is not _UNSET:
        sound.title, sound.title_by = title, person
        changed.append("title")
    if caption is not _UNSET:
        if caption is None:
            sound.caption, sound.caption_by = None, None
        else:
            sound.caption, sound.caption_by = caption, person
        changed.append("caption")
    if tags is not _UNSET:
        if list(sound.tags) != list(tags):
            sound.tags = list(tags)
            mark_for_index(session, sound.id)
        sound.tags_by = person
        changed.append("tags")
    session.flush()
    return changed


# --- full-text search ----------------------------------------------------------------------

# Words that say nothing about a sound; FTS5 has no stop list of its own (PostgreSQL's
# 'english' configuration drops these and more).
STOPWORDS = frozenset(
    "a an and are as at be by for from in into is it its of on or sound sounds that the this "
    "to with".split()
)
# Column weights: a word in the title counts most, then tags, then the caption.
SQLITE_BM25_WEIGHTS = (4.0, 2.0, 1.0)


def query_terms(query: str) -> list[str]:
    """The searchable words of a query: lowercase runs of letters and digits, no stop words."""
    words = re.findall(r"[^\W_]+", unicodedata.normalize("NFC", query).lower())
    out: list[str] = []
    for word in words:
        if word not in STOPWORDS and word not in out:
            out.append(word)
    return out[:32]


def words_search(
    session: Session, query: str, limit: int, flt: SearchFilter | None = None
) -> list[tuple[int, float]]:
    """(sound id, relevance) of the sounds whose words match any word of the query, best first.

    Relevance is BM25 on SQLite and ts_rank on PostgreSQL: comparable within one result list
    only, which is all rank fusion needs.
    """
    terms = query_terms(query)
    if not terms or limit < 1:
        return []
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] = {"limit": limit}
    conditions = _filter_sql(flt, dialect, params)
    if dialect == "sqlite":
        params["q"] = " OR ".join(f'"{term}"' for term in terms)
        weights = ", ".join(str(w) for w in SQLITE_BM25_WEIGHTS)
        sql = (
            f"SELECT s.id, -bm25(sounds_fts, {weights}) AS score FROM sounds_fts "
            "JOIN sounds s ON s.id = sounds_fts.rowid WHERE sounds_fts MATCH :q"
            f"{conditions} ORDER BY score DESC, s.id LIMIT :limit"
        )
    elif dialect == "postgresql":
        params["q"] = " | ".join(terms)
        sql = (
            "SELECT s.id, ts_rank(s.words, q) AS score "
            "FROM sounds s, to_tsquery('english', :q) q WHERE s.words @@ q"
            f"{conditions} ORDER BY score DESC, s.id LIMIT :limit"
        )
    else:
        raise NotImplementedError(f"no full-text search on {dialect}")
    rows = session.execute(text(sql), params).all()
    return [(int(sound_id), float(score)) for sound_id, score in rows]


def _filter_sql(flt: SearchFilter | None, dialect: str, params: dict[str, Any]) -> str:
    if flt is None:
        return ""
    parts = []
    if flt.min_duration is not None:
        parts.append("s.duration >= :min_duration")
        params["min_duration"] = flt.min_duration
    if flt.max_duration is not None:
        parts.append("s.duration <= :max_duration")
        params["max_duration"] = flt.max_duration
    if flt.source is not None:
        parts.append("s.source = :source")
        params["source"] = flt.source
    for i, tag in enumerate(flt.tags):
        params[f"tag{i}"] = tag
        if dialect == "postgresql":
            parts.append(f"s.tags::jsonb @> jsonb_build_array(CAST(:tag{i} AS text))")
        else:
            parts.append(f"EXISTS (SELECT 1 FROM json_each(s.tags) WHERE value = :tag{i})")
    return "".join(f" AND {part}" for part in parts)
