# One image for every service (worker, admin, camera, migrate); the command differs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir -p model core worker producer admin \
    && touch model/__init__.py core/__init__.py worker/__init__.py producer/__init__.py admin/__init__.py \
    && pip install . \
    && pip uninstall -y steel-inspection

COPY . .
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 inspection \
    && mkdir -p /data/blobs /data/inbox \
    && chown -R inspection /data

USER inspection
