# plancheck: one image for the migration, workers, beats, Flower and the metrics endpoint.
# WORKDIR is the source checkout, so `celery -A plancheck` finds celeryconfig.py and plancheck finds
# alembic.ini and alembic/ at run time (it is installed editable, from this directory).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group plancheck

WORKDIR /app

# Dependencies first, in their own layer: a source change does not reinstall them. The stub
# package only lets pip resolve the project; the editable install points at /app, where the
# real sources land next.
COPY pyproject.toml README.md ./
RUN mkdir plancheck && touch plancheck/__init__.py celeryconfig.py \
    && pip install -e . \
    && rm -r plancheck celeryconfig.py

COPY alembic.ini celeryconfig.py ./
COPY alembic ./alembic
COPY plancheck ./plancheck
RUN python -m compileall -q plancheck alembic celeryconfig.py

# Root owns the code; the services run unprivileged and write nothing here (beat keeps no
# schedule file).
USER plancheck

CMD ["plancheck", "--help"]
