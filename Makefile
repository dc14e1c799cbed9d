# One virtual environment in .venv; every target uses it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision are pinned to the pair this project is tested with (and that lies on
# the development machines' disk); override for another CUDA/CPU build, e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DATA ?= $(or $(CIFAR_PL_DATA),../shared/data)

STAMP := $(VENV)/.cifar_pl-installed

.PHONY: install quickstart transfer test test-slow test-long test-all test-gpu lint format tensorboard clean

# The stamp makes `make test` on a fresh clone install first, and skip pip when nothing changed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

quickstart: $(STAMP)
	$(PY) -m cifar_pl fit --config configs/quickstart.yaml --data.data_dir $(DATA)

# The transfer-learning workflow (docs/transfer.md) on a folder of class folders: make transfer PHOTOS=data/photos
PHOTOS ?= data/photos
transfer: $(STAMP)
	PY=$(PY) CIFAR_PL_DATA=$(DATA) bash scripts/transfer.sh $(PHOTOS) $(NAME)

# make test: the fast tier (a few minutes; what the README names); make test-slow: the tests that start training
# processes of their own (kills, signals, DDP, sweeps, compile); CI runs both. make test-long: training runs of
# minutes that check a result (by hand); make test-all: every CPU tier; make test-gpu: the GPU tier (fit/test/report,
# bf16, channels_last, compile, predict/viz, resume, DDP on a CUDA device).
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not long and not gpu"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow and not long and not gpu"

test-long: $(STAMP)
	$(PY) -m pytest -q -m "long and not gpu"

test-all: test test-slow test-long

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu -rs

lint: $(STAMP)
	$(PY) -m ruff check cifar_pl tests bench scripts
	$(PY) -m ruff format --check cifar_pl tests bench scripts

format:
	$(PY) -m ruff check --fix cifar_pl tests bench scripts
	$(PY) -m ruff format cifar_pl tests bench scripts

tensorboard: $(STAMP)
	$(PY) -m tensorboard.main --logdir lightning_logs

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
