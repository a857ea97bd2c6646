"""Alembic environment: migrations run online against PLANCHECK_DATABASE_URL (or a URL passed in)."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool

from plancheck.core.settings import load_settings
from plancheck.store.db import create_metadata_engine

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or load_settings().database_url
    engine = create_metadata_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
