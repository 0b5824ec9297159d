# The Glimpse API: `docker compose up`, or build it alone with
#   docker build -t glimpse .                                              (CPU PyTorch)
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 -t glimpse:cuda .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# Where torch and torchvision come from: the CPU wheels are ~5x smaller than PyPI's CUDA ones.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
# torch and torchvision first, from TORCH_INDEX_URL, within the ranges pyproject.toml pins;
# `pip install .` then finds them satisfied and takes everything else from PyPI.
RUN python -c "import re, tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if re.match(r'torch(vision)?\b', d)))" > torch.txt \
    && pip install --index-url "$TORCH_INDEX_URL" -r torch.txt
COPY models ./models
COPY drawing ./drawing
COPY training ./training
COPY service ./service
COPY api ./api
COPY benchmarks ./benchmarks
RUN pip install .

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 --user-group glimpse
COPY --from=build /opt/venv /opt/venv
# Root-owned and not writable by the service user; compose also mounts it read-only.
COPY models/pretrained /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/tmp/huggingface \
    GLIMPSE_HOST=0.0.0.0 \
    GLIMPSE_PORT=8000 \
    GLIMPSE_CAPTION_MODEL=/models/captioner \
    GLIMPSE_VQA_MODEL=/models/vqa
USER glimpse
WORKDIR /home/glimpse
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
CMD ["glimpse", "serve"]
