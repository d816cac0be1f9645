# One image for the API, the workers and the migration; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    FOLEY_DATA_DIR=/data

WORKDIR /app

# torch and torchvision first, pinned together (laion-clap imports torchvision). The default
# wheels run on CPU and GPU; TORCH_INDEX_URL may name a CPU-only index for smaller images.
ARG TORCH_INDEX_URL=""
RUN pip install torch==2.14.1 torchvision==0.29.1 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}

# Dependencies change less often than the code: install them from pyproject.toml alone.
COPY pyproject.toml README.md ./
RUN mkdir -p core generative index_builder search workers foley migrations \
    && touch core/__init__.py generative/__init__.py index_builder/__init__.py \
       search/__init__.py workers/__init__.py foley/__init__.py migrations/__init__.py \
    && pip install -e . \
    && rm -rf core generative index_builder search workers foley migrations

COPY core core
COPY generative generative
COPY index_builder index_builder
COPY search search
COPY workers workers
COPY foley foley
COPY migrations migrations
COPY models models

RUN useradd --create-home --uid 10001 foley && mkdir -p /data && chown foley /data
USER foley
VOLUME ["/data"]
EXPOSE 8000

CMD ["foley", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
