"""Engine and session factory. Nothing connects at import time: the app's lifespan calls these."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    pass


def make_engine(url: str, **kwargs) -> Engine:
    """An engine for SQLite (foreign keys on, WAL, usable from the relay thread) or PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            # ON DELETE CASCADE and the FK checks of the schema need this on SQLite.
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def get_or_not_found(session: Session, model: type, ident, what: str, hint: str = ""):
    """Load a row by primary key or raise NotFound with a message that says where to look."""
    from learnloop.errors import NotFound

    row = session.get(model, ident)
    if row is None:
        raise NotFound(f"{what} {ident} does not exist" + (f"; {hint}" if hint else ""),
                       details={"resource": what.lower(), "id": str(ident)})
    return row


def paginate(session: Session, statement, *, limit: int, offset: int) -> tuple[list, int]:
    """One page of ``statement``'s rows plus the total count of matching rows."""
    from sqlalchemy import func, select

    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    rows = list(session.scalars(statement.limit(limit).offset(offset)).all())
    return rows, total
