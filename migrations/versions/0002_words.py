"""words: who wrote each sound's title, caption and tags; caption segments; a full-text index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:20:00

The full-text index over title, tags and caption follows the catalog in the same transaction
as every write to `sounds`, deletions included:

- SQLite: an FTS5 table with `sounds` as its external content, kept in step by triggers.
- PostgreSQL: a stored generated `tsvector` column (title weighted A, tags B, caption C) with
  a GIN index.

A later migration that rebuilds `sounds` on SQLite (batch mode copies the table) drops the
triggers with it and must create them again (`create_sqlite_words`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQLITE_WORDS = (
    "CREATE VIRTUAL TABLE sounds_fts USING fts5("
    "title, tags, caption, content='sounds', content_rowid='id', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER sounds_fts_insert AFTER INSERT ON sounds BEGIN "
    "INSERT INTO sounds_fts(rowid, title, tags, caption) "
    "VALUES (new.id, new.title, new.tags, new.caption); END",
    "CREATE TRIGGER sounds_fts_delete AFTER DELETE ON sounds BEGIN "
    "INSERT INTO sounds_fts(sounds_fts, rowid, title, tags, caption) "
    "VALUES ('delete', old.id, old.title, old.tags, old.caption); END",
    "CREATE TRIGGER sounds_fts_update AFTER UPDATE OF title, tags, caption ON sounds BEGIN "
    "INSERT INTO sounds_fts(sounds_fts, rowid, title, tags, caption) "
    "VALUES ('delete', old.id, old.title, old.tags, old.caption); "
    "INSERT INTO sounds_fts(rowid, title, tags, caption) "
    "VALUES (new.id, new.title, new.tags, new.caption); END",
    "INSERT INTO sounds_fts(sounds_fts) VALUES ('rebuild')",
)

POSTGRES_WORDS = (
    "ALTER TABLE sounds ADD COLUMN words tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(tags::text, '')), 'B') || "
    "setweight(to_tsvector('english', coalesce(caption, '')), 'C')) STORED",
    "CREATE INDEX ix_sounds_words ON sounds USING gin (words)",
)


def create_sqlite_words() -> None:
    for statement in SQLITE_WORDS:
        op.execute(statement)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy of `sounds`) works on both databases.
    op.add_column("sounds", sa.Column("title_by", sa.String(16), nullable=True))
    op.add_column("sounds", sa.Column("caption_by", sa.String(16), nullable=True))
    op.add_column("sounds", sa.Column("tags_by", sa.String(16), nullable=True))
    op.add_column("sounds", sa.Column("caption_segments", sa.JSON(), nullable=True))
    op.add_column("sounds", sa.Column("caption_model", sa.String(128), nullable=True))
    # Until now titles and tags came from file and folder names, and nothing wrote captions.
    op.execute("UPDATE sounds SET title_by = 'metadata', tags_by = 'metadata'")
    op.execute("UPDATE sounds SET caption_by = 'metadata' WHERE caption IS NOT NULL")
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        create_sqlite_words()
    elif dialect == "postgresql":
        for statement in POSTGRES_WORDS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("sounds_fts_insert", "sounds_fts_delete", "sounds_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS sounds_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_sounds_words")
        op.execute("ALTER TABLE sounds DROP COLUMN IF EXISTS words")
    for column in ("caption_model", "caption_segments", "tags_by", "caption_by", "title_by"):
        op.drop_column("sounds", column)
