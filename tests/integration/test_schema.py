"""The SQLAlchemy models describe exactly the schema that `alembic upgrade head` builds."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

import plancheck.store.beats  # noqa: F401  (registers its model on the shared metadata)
from plancheck.store.models import Base


def test_models_match_the_migrations(metadata_url: str) -> None:
    engine = create_engine(metadata_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
