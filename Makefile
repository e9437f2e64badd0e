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

.PHONY: setup run test test-sanitize bench check-cuda mutants mutants-ci clean

setup: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)" numpy scikit-build-core pybind11 ninja
	# Venvs made before the distribution was renamed torch-fastrl still hold the old one.
	$(BIN)/pip uninstall --quiet --yes fastrl 2>/dev/null || true
	# --no-build-isolation: compile against the torch installed above (its C++ ABI is per release).
	$(BIN)/pip install --quiet --no-build-isolation -e ".[test,rlhf,render]"
	$(BIN)/python -m fastrl info
	touch $(STAMP)

# The main job: PPO on CartPole-v1 on the CPU until solved, then a 100-episode evaluation;
# writes runs/ppo-CartPole-v1/{metrics.csv,learning_curve.png,checkpoint.pt}.
run: setup
	$(BIN)/fastrl train ppo --env CartPole-v1 --out runs/ppo-CartPole-v1

test: setup
	$(BIN)/ruff check fastrl tests bench tools
	$(BIN)/python -m pytest tests --require-extension --cov=fastrl --cov-branch --cov-report=term
	$(BIN)/python tools/coverage_gate.py python

# The op and env tests on an AddressSanitizer + UBSan build of the extension (build/sanitize,
# loaded through FASTRL_EXTENSION): an out-of-bounds access or undefined behaviour aborts the run.
# The same build counts lines for gcov: the C++ coverage of csrc/core and csrc/cpu is then gated.
SAN_DIR := build/sanitize
SAN_RUNTIME = $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libubsan.so)
test-sanitize: setup
	PATH="$(abspath $(BIN)):$$PATH" cmake -S . -B $(SAN_DIR) -G Ninja -DFASTRL_SANITIZE=ON -DFASTRL_COVERAGE=ON -DFASTRL_CUDA=0 \
		-DPython_EXECUTABLE="$(abspath $(BIN))/python" -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
	PATH="$(abspath $(BIN)):$$PATH" cmake --build $(SAN_DIR)
	find $(SAN_DIR) -name '*.gcda' -delete
	LD_PRELOAD="$(SAN_RUNTIME)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 FASTRL_BACKEND=native \
		FASTRL_EXTENSION="$$(ls $(abspath $(SAN_DIR))/_C*.so)" $(BIN)/python -m pytest tests/ops tests/envs -q \
		--require-extension \
		--capture=sys  # C-level stderr (the sanitizer report) stays visible
	$(BIN)/python tools/coverage_gate.py cpp --build $(SAN_DIR)

# Mutation testing (docs/testing.md): mutants of the references, rollout, sampling and trainers,
# then the hand-made C++ mutants, each in a scratch copy under /tmp/mut (about 1.5 h on 2 cores).
mutants: setup
	mkdir -p build
	$(BIN)/python tools/mutants.py --preset all --json build/mutants.json
	$(BIN)/python tools/mutants.py --cpp --json build/mutants-cpp.json

# In CI: one small preset, all of whose mutants the tests must kill (the score goes to CI's log).
mutants-ci: setup
	$(BIN)/python tools/mutants.py --preset rlhf-advantages --fail-under 100

# Every bench file's JSON in bench/results/<family>-$(MACHINE).json, then a table per family and a
# PNG chart next to the JSON (bench/report.py; bench/README.md's tables come from the same script).
MACHINE ?= local
bench: setup
	for file in bench/bench_*.py; do \
		family=$$(basename $$file .py); family=$${family#bench_}; \
		$(BIN)/python -m pytest $$file --benchmark-only -p no:cacheprovider \
			--benchmark-json bench/results/$$family-$(MACHINE).json || exit 1; \
	done
	$(BIN)/python bench/report.py bench/results/*-$(MACHINE).json --png bench/results

check-cuda: setup
	$(BIN)/python tools/check_cuda.py

clean:
	rm -rf $(VENV) build .pytest_cache
