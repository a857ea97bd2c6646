# plancheck: one image for the migration, workers, beats, Flower, the metrics endpoint and the API.
# Built from the project's wheel, as a user installs it: the image holds no source checkout, and
# `celery -A plancheck`, `plancheck db upgrade` and the other commands work from any directory
# (celeryconfig and the migrations ship inside the wheel).

# -- build the wheel -------------------------------------------------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini celeryconfig.py ./
COPY alembic ./alembic
COPY plancheck ./plancheck
RUN pip wheel --no-deps --wheel-dir /wheels .

# -- the image -------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group plancheck

# pip compiles the bytecode on install; root owns it, and the services write nothing there (beat
# keeps no schedule file).
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -r /wheels

USER plancheck
WORKDIR /home/plancheck

CMD ["plancheck", "--help"]
