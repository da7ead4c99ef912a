"""Alembic environment for the store: always run programmatically by `migrate.upgrade`, which hands over
an open connection in `config.attributes["connection"]` (there is no alembic.ini and no offline mode)."""

from alembic import context

from portway.engine.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
