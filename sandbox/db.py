"""The metadata database: engine and sessions (``sandbox.instance`` creates them from the configuration).

Reads use the request's session. Every change goes through ``writing()``, one unit of work that
commits or rolls back as a whole; on SQLite it starts with ``BEGIN IMMEDIATE`` so that two writers
queue for the lock instead of failing when a read transaction tries to upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

if TYPE_CHECKING:
    from flask import Flask

WRITE_OPTION = "sandbox_write"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})
        _sqlite_begin(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_begin(engine: Engine) -> None:
    """Let SQLAlchemy own transactions on pysqlite, with IMMEDIATE for writers (SQLAlchemy's recipe)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One write unit of work: commit at the end, roll back on any exception."""
        with self.sessions() as session:
            session.connection(execution_options={WRITE_OPTION: True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise


def init_app(app: Flask) -> None:
    """Close each request's read session at teardown (the app's ``Database`` is in ``app.extensions``)."""

    from flask import g  # noqa: PLC0415 - as in get_db

    @app.teardown_appcontext
    def _close(exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


def get_db() -> Database:
    from flask import current_app  # noqa: PLC0415 - the web app's helpers; workers import this module without Flask

    db: Database = current_app.extensions["sandbox.db"]
    return db


def read_session() -> Session:
    """The request's read session (closed at teardown)."""
    from flask import g  # noqa: PLC0415 - as in get_db

    if "db_session" not in g:
        g.db_session = get_db().sessions()
    session: Session = g.db_session
    return session


def writing() -> AbstractContextManager[Session]:
    """This request's write unit of work (``Database.writing``).

    The request's read session first gives its connection back to the pool, so that a request never
    holds two connections at once: otherwise concurrent requests, each holding a read connection and
    waiting for a write one, could exhaust the pool and wait on each other until its timeout.
    """
    from flask import g  # noqa: PLC0415 - as in get_db

    if "db_session" in g:
        g.db_session.rollback()
    return get_db().writing()


def get_db_of(app: Flask) -> Database:
    found: Database = app.extensions["sandbox.db"]
    return found
