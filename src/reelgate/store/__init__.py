"""Task stores: an in-memory fake, SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

from reelgate.ports import TaskStore


def open_store(url: str) -> TaskStore:
    """The store for ``url``: ``sqlite:///path``, ``postgresql://…`` or ``memory:``."""
    if url.startswith("sqlite:///"):
        from reelgate.store.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from reelgate.store.postgres import PostgresStore

        return PostgresStore(url)
    if url == "memory:":
        from reelgate.store.memory import MemoryStore

        return MemoryStore()
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///, postgresql:// or memory:")
