"""Alembic environment: runs on the connection ``service.store.migrate`` hands over (or the URL)."""

from alembic import context
from sqlalchemy import Connection, create_engine

from service.store import MIGRATION_LOCK_KEY, Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two controllers starting on a fresh database would both create alembic_version
            # and the tables (one fails on a duplicate key). Serialise them: the lock lasts
            # until this transaction ends, and the second then finds the schema at head.
            # (SQLite needs nothing: BEGIN IMMEDIATE already serialises writers.)
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (conn := config.attributes.get("connection")) is not None:
    _run(conn)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: neither a connection nor sqlalchemy.url was given")
    engine = create_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()
