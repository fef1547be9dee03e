"""The catalog's schema: the migrations that build it, one per version (``PRAGMA user_version``).

>>> SCHEMA_VERSION == len(MIGRATIONS)
True
>>> statements("CREATE TABLE a (x); CREATE TABLE b (y);")
['CREATE TABLE a (x)', 'CREATE TABLE b (y)']
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "statements"]

# Each entry migrates from version i to i + 1. Never edit a released entry:
# append a new one, so every older catalog can be brought forward.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the core tables
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL,
        labels TEXT NOT NULL,
        synonyms TEXT NOT NULL,
        embedding_dim INTEGER,
        top_k INTEGER NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (name, sha256)
    );
    CREATE TABLE contents (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        width INTEGER,
        height INTEGER,
        taken_at TEXT,
        camera TEXT
    );
    CREATE TABLE analyses (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES models(id),
        PRIMARY KEY (content_id, model_id)
    ) WITHOUT ROWID;
    CREATE TABLE predictions (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES models(id),
        label INTEGER NOT NULL,
        score REAL NOT NULL,
        PRIMARY KEY (content_id, model_id, label)
    ) WITHOUT ROWID;
    CREATE INDEX predictions_by_label ON predictions (model_id, label, score DESC);
    CREATE TABLE embeddings (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        model_id INTEGER NOT NULL REFERENCES models(id),
        vector BLOB NOT NULL,
        PRIMARY KEY (content_id, model_id)
    ) WITHOUT ROWID;
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_id INTEGER REFERENCES contents(id) ON DELETE SET NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'gone')),
        error TEXT,
        indexed_at TEXT NOT NULL
    );
    CREATE INDEX files_by_content ON files (content_id);
    """,
    # 1 -> 2: a record of index runs, and a readable view for ad-hoc SQL
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
        models TEXT NOT NULL,
        summary TEXT
    );
    CREATE VIEW photo_labels AS
        SELECT f.path AS path, m.name AS model,
               json_extract(m.labels, '$[' || p.label || ']') AS label, p.score AS score
        FROM files f
        JOIN predictions p ON p.content_id = f.content_id
        JOIN models m ON m.id = p.model_id
        WHERE f.status = 'ok';
    """,
    # 2 -> 3: what a photo is besides its labels (library/facts.py), its generated title and
    # description (library/describe.py), and the cameras and places seen (for reading queries).
    # Rows from version 2 keep facts NULL until the next index run computes them.
    """
    ALTER TABLE contents ADD COLUMN latitude REAL;
    ALTER TABLE contents ADD COLUMN longitude REAL;
    ALTER TABLE contents ADD COLUMN place TEXT;
    ALTER TABLE contents ADD COLUMN facts INTEGER;
    ALTER TABLE contents ADD COLUMN title TEXT;
    ALTER TABLE contents ADD COLUMN description TEXT;
    CREATE TABLE colours (
        content_id INTEGER NOT NULL REFERENCES contents(id) ON DELETE CASCADE,
        colour TEXT NOT NULL,
        share REAL NOT NULL,
        PRIMARY KEY (content_id, colour)
    ) WITHOUT ROWID;
    CREATE INDEX colours_by_name ON colours (colour, share DESC);
    CREATE INDEX contents_by_taken ON contents (taken_at);
    CREATE INDEX contents_by_camera ON contents (camera);
    CREATE INDEX contents_by_place ON contents (place);
    CREATE TABLE terms (kind TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, value)) WITHOUT ROWID;
    INSERT OR IGNORE INTO terms (kind, value) SELECT DISTINCT 'camera', camera FROM contents WHERE camera IS NOT NULL;
    """,
    # 3 -> 4: the parts of the day each photo was taken in (library/daytime.py: a bit per part, 0 without
    # an EXIF time), on an index so "sunset" or "night" is read off it. NULL until computed: the next
    # index run computes it from the stored time and position (library/daytime_index.py), decoding nothing.
    """
    ALTER TABLE contents ADD COLUMN daytime INTEGER;
    CREATE INDEX contents_by_daytime ON contents (daytime);
    """,
    # 4 -> 5: which naming computed each content's colours (library/colours.py: COLOURS_VERSION). NULL on the
    # rows of older catalogs, whose colours were the nearest xkcd centroid by area: the next index run names
    # them again (library/colour_refresh.py: a small decode for the colours, nothing else) and re-describes them.
    """
    ALTER TABLE contents ADD COLUMN colours_version INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """The SQL statements of a migration script, one by one (sqlite3 runs one per call in a transaction)."""
    return [part.strip() for part in script.split(";") if part.strip() and not part.strip().startswith("--")]
