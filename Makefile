# visrep: `make demo` runs the main job, `make test` the test suite (both set everything up).
VENV   ?= .venv
PY     := $(VENV)/bin/python
FMNIST ?= /usr/share/datasets/fashion-mnist
STAMP  := $(VENV)/.visrep-installed

.PHONY: demo test test-all lint bench data venv clean

venv: $(STAMP)

# torch/torchvision are pinned: these exact versions install from local files in ~2 minutes.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $@

data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ] || [ -f $(FMNIST)/train-images-idx3-ubyte ]; then \
		echo "Fashion-MNIST found in $(FMNIST)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing the Debian package dataset-fashion-mnist"; \
		apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		  (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null); \
	else \
		echo "Fashion-MNIST is missing from $(FMNIST)."; \
		echo "Install it with: sudo apt-get install dataset-fashion-mnist"; \
		echo "or put the four idx files (train/t10k images/labels) in a folder and run: make demo FMNIST=/that/folder"; \
		exit 1; \
	fi
	@# Noto emoji (npm registry, 74 MB): real colour images for `visrep data build-folder`
	@# and the emoji caption source (optional: their tests skip without it)
	@if [ ! -f emoji-datasource-google-16.0.0.tgz ] && command -v npm >/dev/null; then \
		npm pack -q emoji-datasource-google@16.0.0 >/dev/null 2>&1 || echo "emoji package not fetched (optional)"; \
	fi
	@# WordNet for `visrep curate build-metadata` (optional: its tests skip without it)
	@if [ ! -d /usr/share/wordnet ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q wordnet-base >/dev/null 2>&1 || echo "wordnet-base not installed (optional)"; \
	fi
	@# FFmpeg's shared libraries for the optional TorchCodec decoder, data.video_backend=torchcodec
	@# (optional: its tests skip without them)
	@if ! ldconfig -p 2>/dev/null | grep -q libavcodec && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q --no-install-recommends ffmpeg >/dev/null 2>&1 || echo "ffmpeg not installed (optional)"; \
	fi

demo: venv data
	$(VENV)/bin/visrep train mae_fmnist data.root=$(FMNIST) eval.root=$(FMNIST)
	@echo "report: runs/demo/report.md"

# FMNIST reaches the tests (tests/conftest.py) and, through VISREP_FMNIST_ROOT, every run they start
test: venv data
	FMNIST=$(FMNIST) $(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile

test-all: venv data
	FMNIST=$(FMNIST) $(PY) -m pytest -q -n 2 --dist loadfile

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: venv data
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/quality_per_budget.py

clean:
	rm -rf $(VENV) runs .pytest_cache
