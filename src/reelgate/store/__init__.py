"""Task stores: an in-memory fake, SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

from reelgate.ports import TaskStore


def open_store(url: str, *, pool_size: int = 10) -> TaskStore:
    """The store for ``url``: ``sqlite:///path``, ``postgresql://…`` or ``memory:``.

    ``pool_size`` is the most connections a PostgreSQL store opens.
    """
    if url.startswith("sqlite:///"):
        from reelgate.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from reelgate.store.postgres import PostgresStore

        return PostgresStore(url, max_size=pool_size)
    if url == "memory:":
        from reelgate.store.memory import MemoryStore

        return MemoryStore()
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///, postgresql:// or memory:")
