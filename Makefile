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

.PHONY: setup run test fuzz test-sanitize bench check-cuda check-cuda-build check-gpu-script mutants mutants-ci clean

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

# The property tests' search (CI's `make test` runs a fixed 60 examples of each): 1000 fresh random
# examples a test; HYPOTHESIS_SEED=N repeats a search.
fuzz: setup
	HYPOTHESIS_PROFILE=thorough $(BIN)/python -m pytest tests -m hypothesis -q \
		$(if $(HYPOTHESIS_SEED),--hypothesis-seed=$(HYPOTHESIS_SEED))

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

# The full extension, CPU and CUDA kernels, compiled, linked and loaded against the newest CUDA
# torch, in a venv of its own (no GPU needed: only running a kernel needs one), then the CPU tests
# on that build. The PyPI cmake: CMake 3.25 knows no CUDA C++20 (torch 2.14's headers need it);
# its bin/ first on PATH so that scikit-build-core takes it. Its own build dir beside .venv's.
TORCH_CUDA ?= torch==2.14.1
CUDA_VENV  := .venv-cuda
CUDA_BIN   := $(CUDA_VENV)/bin
CUDA_PATH_FIRST := PATH="$(abspath $(CUDA_BIN)):$$PATH"
CUDA_STAMP := $(CUDA_VENV)/.fastrl-installed

$(CUDA_STAMP): $(SOURCES)
	test -x $(CUDA_BIN)/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_BIN)/pip install --quiet --upgrade pip
	$(CUDA_BIN)/pip install --quiet "$(TORCH_CUDA)" numpy scikit-build-core pybind11 ninja cmake
	# --no-deps: the build pins torch==2.14.1+cu130, which a pip constraint torch<=2.14.1 refuses
	$(CUDA_BIN)/pip install --quiet pytest hypothesis "gymnasium>=1.0" tqdm minatar==1.0.15
	$(CUDA_PATH_FIRST) FASTRL_CUDA=1 $(CUDA_BIN)/pip install --quiet --no-build-isolation --no-deps \
		--config-settings=build-dir=build/cuda -e .
	touch $(CUDA_STAMP)

check-cuda-build: $(CUDA_STAMP)
	$(CUDA_BIN)/python -m fastrl info
	$(CUDA_BIN)/python tools/check_cuda_build.py
	$(CUDA_BIN)/python -m pytest tests/ops tests/envs tests/test_extension.py -q -p no:cacheprovider \
		--require-extension

# bench/gpu.sh rehearsed without a GPU against that venv's CUDA torch: its preflight, its CMake
# build (build/gpu) and the check that the result loads with its CUDA kernels; it stops there.
check-gpu-script: $(CUDA_STAMP)
	$(CUDA_PATH_FIRST) OUT=build/gpu-dry-run PYTHON="$(abspath $(CUDA_BIN))/python" bash bench/gpu.sh --dry-run

clean:
	rm -rf $(VENV) $(CUDA_VENV) build .pytest_cache
