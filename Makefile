# Two commands on a fresh machine (each sets itself up first):
#   make run    the main job
#   make test   lint + the test suite
# Set-up: a virtualenv in .venv with a pinned CPU torch, then fastrl built against it.
# Use another torch (e.g. a CUDA build) with: make TORCH="torch==2.x.y" ...

PYTHON ?= python3
TORCH  ?= torch==2.13.0
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fastrl-installed
SOURCES := pyproject.toml CMakeLists.txt $(shell find csrc -type f 2>/dev/null)

.PHONY: setup run test bench check-cuda clean

setup: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)" scikit-build-core pybind11 ninja
	# --no-build-isolation: compile against the torch installed above (its C++ ABI is per release).
	$(BIN)/pip install --quiet --no-build-isolation -e ".[test]"
	$(BIN)/python -m fastrl info
	touch $(STAMP)

# The main job: PPO on CartPole-v1 on the CPU until solved, then a 100-episode evaluation;
# writes runs/ppo-CartPole-v1/{metrics.csv,learning_curve.png,checkpoint.pt}.
run: setup
	$(BIN)/fastrl train ppo --env CartPole-v1 --out runs/ppo-CartPole-v1

test: setup
	$(BIN)/ruff check fastrl tests bench tools
	$(BIN)/python -m pytest tests

bench: setup
	$(BIN)/python -m pytest bench --benchmark-only

check-cuda: setup
	$(BIN)/python tools/check_cuda.py

clean:
	rm -rf $(VENV) build .pytest_cache
