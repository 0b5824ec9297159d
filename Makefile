# One command each, on a fresh machine: `make serve` and `make test` set themselves up.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# apt-get needs root: use sudo when make runs as another user.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: setup test serve browser lint typecheck format clean captioner vqa

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Debian's chromium, for the web page test (Playwright drives it; browsers are not downloaded).
browser:
	@command -v chromium >/dev/null 2>&1 || ( $(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium )

test: setup browser lint typecheck
	$(VENV)/bin/pytest

serve: setup
	$(VENV)/bin/glimpse serve --host 127.0.0.1 --port 8000

# Retrain the bundled models from scratch on a CPU (docs/training.md): each step resumes
# where a stopped run left off, so the target can be run again after an interruption.
GLIMPSE := $(VENV)/bin/glimpse
WORLD := data/shapes
WORLD_WRITTEN := $(WORLD)/annotations/captions_train.json
TRAIN := $(GLIMPSE) train captions --data $(WORLD) --resume

$(WORLD_WRITTEN): | setup
	$(GLIMPSE) data shapes --out $(WORLD)

captioner: $(WORLD_WRITTEN)  # 68 minutes on 2 cores from a fresh clone (docs/training.md)
	$(TRAIN) --config shapes-cpu --out runs/captions augmented_views=2
	$(TRAIN) --config shapes-scst --out runs/captions-scst \
		attention_supervision=0.1 augmented_views=2 epochs=4
	@echo "the captioner: runs/captions-scst/model (copy it to models/pretrained/captioner)"

vqa: $(WORLD_WRITTEN)  # 95 minutes on 2 cores from a fresh clone (docs/training.md)
	$(GLIMPSE) train vqa --data $(WORLD) --config vqa-shapes-grounded --out runs/vqa --resume
	$(GLIMPSE) train vqa --data $(WORLD) --config vqa-shapes --out runs/vqa-concat --resume \
		'model={"fusion": "concat"}' augmented_views=2
	@echo "the VQA model: runs/vqa/model (copy it to models/pretrained/vqa); baseline: runs/vqa-concat"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
