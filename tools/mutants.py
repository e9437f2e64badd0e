"""Mutation testing: does the suite fail when the code is wrong?

A mutant is the code with one small defect put in: ``<`` for ``<=`` (``>``/``>=``, ``==``/``!=``,
``is``/``is not``), ``-`` for ``+`` (``*``/``/``), a constant changed (0 and 1 swapped, any other
number n to n + 1, True/False), ``and`` for ``or`` (``&``/``|`` on bool tensors), a ``not`` (``~``)
or a unary minus dropped, ``torch.where(c, a, b)`` replaced by ``a``. The tests that cover the
module run on each mutant, one at a time, in a scratch copy of the repository (never in the
working tree); a mutant is *killed* when they fail (or time out) and *survives* when they pass.
A survivor is either equivalent (the defect changes nothing observable) or a gap in the tests.
The score is killed / (killed + survived).

    python tools/mutants.py --preset all --json build/mutants.json    # what `make mutants` runs
    python tools/mutants.py --preset returns-reference ppo-reference  # some presets (--list)
    python tools/mutants.py --module fastrl/nn/gpt.py --functions filter_logits \\
        --tests tests/rlhf/test_sampling.py                             # one module, by hand
    python tools/mutants.py --cpp                                     # the hand-made C++ mutants

Python mutants are made with ``ast`` in the named functions only (``Class.method`` for methods);
strings are never mutated, and code that only validates input (``raise``/``assert``, the
condition of an ``if`` whose body only raises, calls of ``_checks.*`` and ``check_*``) is counted
apart as "validation": the bad-input tests' business. Each mutant runs only the tests that ran
its line in a baseline run under coverage (a survivor is then run again on the whole test files
before it is reported). Tests run through a small fork server that imports torch, hypothesis
and pytest once (a fresh pytest per mutant would spend most of its time importing), with
``--hypothesis-seed=0`` so that a run is repeatable.

The C++ mutants (``--cpp``) are written by hand in ``CPP_MUTANTS``: each is applied to a scratch
copy, the extension is rebuilt incrementally (one CMake build directory, reused), and the tests
run on that build through ``FASTRL_EXTENSION``. The suite must kill every one.

Standard library only (mutmut and friends are not available here); run it with the project's
virtualenv, whose python has torch, pytest and pytest-cov.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path("/tmp/mut")


# --------------------------------------------------------------------------- what is mutated

@dataclass
class Target:
    name: str
    module: str  # path from the repository root
    functions: list[str]  # qualified names: "gae_reference", "DQN._learn"
    tests: list[str]  # test files (pytest arguments)
    pytest_args: list[str] = field(default_factory=list)  # e.g. ["-m", "not slow"]


_OPS = ["tests/ops/test_opinfo.py", "tests/ops/test_returns.py", "tests/ops/test_ppo_loss.py",
        "tests/ops/test_properties.py"]
_ALGOS = ["tests/algos/test_by_hand.py", "tests/algos/test_pieces.py", "tests/algos/test_episode_stats.py",
          "tests/algos/test_resume_exact.py", "tests/algos/test_train.py"]  # fmt: skip
_NOT_SLOW = ["-m", "not slow"]  # the learning runs take minutes each and test little per line

# In the order `--preset all` runs them: the op references (the spec), the RLHF rollout and the
# sampling, then the trainers' targets, returns and losses.
PRESETS = [
    Target("returns-reference", "fastrl/ops/returns.py",
           ["_masked_step", "gae_reference", "discounted_returns_reference", "rollout_next_values"],
           ["tests/ops/test_opinfo.py", "tests/ops/test_returns.py", "tests/ops/test_properties.py"]),
    Target("ppo-reference", "fastrl/ops/ppo_loss.py",
           ["token_logprobs_reference", "clipped_pg_reference", "importance_log_ratio", "ppo_terms_reference",
            "ppo_loss_reference", "_kl_term", "_zero_masked", "_aggregate", "_stats"],
           ["tests/ops/test_opinfo.py", "tests/ops/test_ppo_loss.py", "tests/ops/test_ppo_loss_options.py",
            "tests/ops/test_properties.py"]),
    Target("masked-stats", "fastrl/utils/stats.py", ["masked_mean", "whiten"],
           [*_OPS, "tests/utils/test_stats.py", "tests/algos/test_by_hand.py", "tests/rlhf/test_rollout.py"]),
    Target("rlhf-rollout", "fastrl/rlhf/rollout.py",
           ["response_hidden", "response_logprobs", "response_values", "sequence_kl", "train_on_prompts"],
           ["tests/rlhf/test_rollout.py", "tests/rlhf/test_ppo.py", "tests/rlhf/test_grpo.py",
            "tests/rlhf/test_configs.py", "tests/rlhf/test_demo.py"], _NOT_SLOW),
    Target("rlhf-advantages", "fastrl/rlhf/advantages.py",
           ["group_advantages", "rloo_advantages", "reinforce_pp_advantages"],
           ["tests/rlhf/test_advantages.py", "tests/rlhf/test_grpo.py"], _NOT_SLOW),
    Target("gpt-sampling", "fastrl/nn/gpt.py",
           ["positions_from_mask", "last_token_index", "left_align", "filter_logits", "_sample", "generate"],
           ["tests/rlhf/test_sampling.py", "tests/rlhf/test_gpt.py", "tests/rlhf/test_rollout.py"]),
    Target("value-and-gaussian-loss", "fastrl/ops/plain_losses.py", ["value_loss", "gaussian_ppo_loss"],
           [*_OPS, "tests/algos/test_by_hand.py"]),
    Target("dqn", "fastrl/algos/dqn.py",
           ["linear_schedule", "ReplayBuffer.add", "ReplayBuffer.sample_windows", "n_step_targets",
            "DQN.epsilon", "DQN.train_iteration", "DQN._collect", "DQN._learn"],
           _ALGOS, _NOT_SLOW),
    Target("onpolicy", "fastrl/algos/onpolicy.py",
           ["OnPolicyTrainer.log_probs", "OnPolicyTrainer.collect_rollout", "OnPolicyTrainer.bootstrapped_next_values",
            "OnPolicyTrainer.flat_log_probs"], _ALGOS, _NOT_SLOW),
    Target("bootstrapped-returns", "fastrl/algos/common.py", ["bootstrapped_returns"], _ALGOS, _NOT_SLOW),
    Target("ppo", "fastrl/algos/ppo.py", ["PPO.train_iteration", "PPO._advantages", "PPO._update"],
           _ALGOS, _NOT_SLOW),
    Target("a2c", "fastrl/algos/a2c.py", ["A2C.train_iteration"], _ALGOS, _NOT_SLOW),
    Target("reinforce", "fastrl/algos/reinforce.py",
           ["Reinforce.train_iteration", "Reinforce._returns"], _ALGOS, _NOT_SLOW),
]


@dataclass
class CppMutant:
    name: str
    file: str
    old: str  # must occur exactly once in the file
    new: str
    defect: str  # what the mutant breaks, in words
    tests: list[str]


_RETURNS_TESTS = ["tests/ops/test_opinfo.py", "tests/ops/test_returns.py", "tests/ops/test_properties.py"]
_LOSS_TESTS = ["tests/ops/test_opinfo.py", "tests/ops/test_ppo_loss.py", "tests/ops/test_properties.py"]
_ENV_TESTS = ["tests/envs/test_vector.py", "tests/envs/test_parity.py", "tests/envs/test_properties.py",
              "tests/envs/test_large_batches.py"]

_MINATAR_TESTS = ["tests/envs/test_minatar.py"]
_RMSPROP_TESTS = ["tests/ops/test_rmsprop.py"]

CPP_MUTANTS = [
    CppMutant("gae-no-termination", "csrc/core/returns.h",
              "const T bootstrap = terminated(t, j) ? T(0) : next_value;", "const T bootstrap = next_value;",
              "dropped branch: GAE bootstraps from the next value after a termination", _RETURNS_TESTS),
    CppMutant("scan-reset-ignored", "csrc/core/returns.h",
              "  if (earlier.reset) return earlier;\n", "",
              "dropped branch: the chunked scan (long, narrow problems) carries across a done step",
              _RETURNS_TESTS),
    CppMutant("scan-last-chunk", "csrc/cpu/returns.cpp",
              "const int64_t chunks = (T + kScanChunk - 1) / kScanChunk;", "const int64_t chunks = T / kScanChunk;",
              "off-by-one chunk: the last, partial chunk of 256 steps of a long column is never computed",
              _RETURNS_TESTS),
    CppMutant("tile-bootstrap", "csrc/cpu/returns.cpp",
              "carry[k] = p.initial_carry(j0 + k);", "carry[k] = p.initial_carry(k);",
              "off-by-one tile: every tile of columns after the first starts from the first tile's bootstrap",
              _RETURNS_TESTS),
    CppMutant("dual-clip-dropped", "csrc/core/ppo_loss.h",
              "if (p.dual_clip > T(0) && advantage < T(0)) {", "if (false) {",
              "dropped branch: the dual clip never bounds the loss of a negative advantage", _LOSS_TESTS),
    CppMutant("k2-constant", "csrc/core/ppo_loss.h",
              "kl = T(0.5) * d * d;", "kl = T(1.0) * d * d;",
              "wrong constant: the k2 KL estimator is (logp - ref)^2 instead of half of it", _LOSS_TESTS),
    CppMutant("env-chunk-end", "csrc/cpu/env_kernel.h",
              "const int64_t hi = std::min(end, lo + kChunk);", "const int64_t hi = std::min(end, lo + kChunk - 1);",
              "off-by-one chunk: the last env of every full chunk of 512 envs is never stepped", _ENV_TESTS),
    CppMutant("cartpole-x-threshold", "csrc/core/envs/cartpole.h",
              "const T x_threshold = T(2.4)", "const T x_threshold = T(2.5)",
              "wrong constant: CartPole terminates at |x| > 2.5 instead of 2.4", _ENV_TESTS),
    CppMutant("seaquest-fish-drawn-when-moving", "csrc/core/minatar/seaquest.h",
              "      draw_entity(obs, e_fish, i, 5);", "      if (moves) draw_entity(obs, e_fish, i, 5);",
              "dropped draw: the step draws a fish only in the frames it moves", _MINATAR_TESTS),
    CppMutant("seaquest-facing-forgotten", "csrc/core/minatar/seaquest.h",
              "s[kSubOr] = (a == 3) | (s[kSubOr] & (a != 1));", "s[kSubOr] = (a == 3);",
              "wrong select: the sub faces left after any action but r", _MINATAR_TESTS),
    CppMutant("seaquest-trail-off-grid", "csrc/core/minatar/seaquest.h",
              "* kChannels + 3] |= (back_x >= 0) & (back_x <= 9);", "* kChannels + 3] |= 1;",
              "dropped check: an entity on the grid's edge draws a trail on the cell it came from off the grid "
              "(clamped onto its own)", _MINATAR_TESTS),
    CppMutant("minatar-partial-vector", "csrc/cpu/minatar_kernel.h",
              "const int padded = (m + 7) / 8 * 8;", "const int padded = m / 8 * 8;",
              "off-by-one vector: the envs of a chunk's last, partial vector of 8 draw from counters never "
              "written", _MINATAR_TESTS),
    CppMutant("philox-x8-key", "csrc/cpu/philox_avx2.h",
              "key1 = _mm256_add_epi32(key1, w1);", "key1 = _mm256_add_epi32(key1, w0);",
              "wrong constant: the AVX2 Philox bumps its second key by the first key's increment",
              _MINATAR_TESTS),
    CppMutant("rmsprop-avx2-unfused", "csrc/cpu/rmsprop_avx2.cpp",
              "const auto sq = O::fmadd(O::mul(w, g), g, O::mul(O::load(square_avg + i), alpha));",
              "const auto sq = O::add(O::mul(O::mul(w, g), g), O::mul(O::load(square_avg + i), alpha));",
              "wrong rounding: the AVX2 RMSProp rounds the squared-gradient average twice (torch's addcmul_ once)",
              _RMSPROP_TESTS),
    CppMutant("rmsprop-avx2-tail", "csrc/cpu/rmsprop_avx2.cpp",
              "  cpu::rmsprop_centered_range(param, grad, square_avg, grad_avg, i, end, h);\n", "",
              "dropped tail: the elements after a parameter's last full vector of 8 (4) are never updated",
              _RMSPROP_TESTS),
]


# --------------------------------------------------------------------------- making mutants

@dataclass
class Mutant:
    id: int
    function: str
    line: int
    kind: str
    old: str  # the source of the node mutated
    new: str  # what replaces it
    start: tuple[int, int]  # (line, utf-8 column) of the node
    end: tuple[int, int]
    lines: list[int]  # lines whose coverage selects the tests to run
    validation: bool = False
    status: str = "not run"  # killed, timeout, survived, uncovered, invalid, validation, not run
    seconds: float = 0.0
    tests: int = 0  # how many test ids ran (0: the whole test files)


_SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,  # the `and`/`or` of bool tensors
    ast.And: ast.Or, ast.Or: ast.And,
}  # fmt: skip


def _variants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(kind, replacement node) of every mutant of this one node."""
    out = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _SWAPS:
                ops = [*node.ops[:i], _SWAPS[type(op)](), *node.ops[i + 1:]]
                out.append(("compare", ast.Compare(node.left, ops, node.comparators)))
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _SWAPS:
        kind = "logic" if isinstance(node.op, (ast.BitAnd, ast.BitOr)) else "arith"
        if isinstance(node, ast.BinOp):
            out.append((kind, ast.BinOp(node.left, _SWAPS[type(node.op)](), node.right)))
        else:
            out.append((kind, ast.AugAssign(node.target, _SWAPS[type(node.op)](), node.value)))
    elif isinstance(node, ast.BoolOp):
        out.append(("logic", ast.BoolOp(_SWAPS[type(node.op)](), node.values)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
        out.append(("not", node.operand))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        out.append(("neg", node.operand))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        out.append(("const", ast.Constant(not node.value)))
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = {0: 1, 1: 0}.get(node.value, node.value + 1)
        out.append(("const", ast.Constant(type(node.value)(value))))
    elif (isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.where" and len(node.args) == 3
          and not node.keywords):  # fmt: skip
        out.append(("where", node.args[1]))
    return out


def _is_check_call(node: ast.AST) -> bool:
    """A call that only validates its arguments: ``_checks.*(...)``, ``check_*(...)``."""
    if not isinstance(node, ast.Call):
        return False
    name = ast.unparse(node.func)
    return name.startswith("_checks.") or name.split(".")[-1].lstrip("_").startswith("check")


def _raises_only(body: list[ast.stmt]) -> bool:
    return all(isinstance(s, ast.Raise) for s in body)


class _Finder(ast.NodeVisitor):
    """Walks the selected functions and lists the mutable nodes with their context."""

    def __init__(self, functions: list[str]):
        self.functions = set(functions)
        self.seen: set[str] = set()
        self.scope: list[str] = []
        self.function: str | None = None  # the selected function we are in
        self.statement: ast.stmt | None = None
        self.validation = 0  # > 0 inside code that only validates input
        self.found: list[tuple[str, ast.AST, ast.stmt, bool]] = []

    def visit_ClassDef(self, node):
        self.scope.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.scope.pop()

    def visit_FunctionDef(self, node):
        qualname = ".".join([*self.scope, node.name])
        selected = self.function is None and qualname in self.functions
        if selected:
            self.seen.add(qualname)
            self.function = qualname
        self.scope.append(node.name)
        self.statement = node
        # the defaults and the body; never the decorators or the annotations
        for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
            self.visit(default)
        for stmt in node.body:
            self.visit(stmt)
        self.scope.pop()
        if selected:
            self.function = None

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        self.statement = node
        if node.value is not None:
            self.visit(node.value)

    def visit_JoinedStr(self, node):
        pass  # f-strings are messages

    def visit_If(self, node):
        self.statement = node
        # `if bad: raise ...` (elif chains too): the condition is part of the input check
        check = _raises_only(node.body) and (not node.orelse or (
            len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If)))  # fmt: skip
        self.validation += check
        self.visit(node.test)
        self.validation -= check
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    def generic_visit(self, node):
        if isinstance(node, ast.stmt):
            self.statement = node
        check = isinstance(node, (ast.Raise, ast.Assert)) or _is_check_call(node)
        self.validation += check
        if isinstance(node, (ast.expr, ast.AugAssign)):
            self._mutate(node)
        super().generic_visit(node)
        self.validation -= check

    def _mutate(self, node):
        if self.function is not None:
            self.found.append((self.function, node, self.statement, self.validation > 0))


def _offset(lines: list[str], line: int, col: int) -> int:
    """Character offset in the source of (1-based line, utf-8 byte column), as ast reports them."""
    return sum(len(x) for x in lines[: line - 1]) + len(lines[line - 1].encode()[:col].decode())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def find_mutants(source: str, functions: list[str]) -> list[Mutant]:
    """Every mutant of the named functions of ``source``, in source order."""
    tree = ast.parse(source)
    finder = _Finder(functions)
    finder.visit(tree)
    missing = set(functions) - finder.seen
    if missing:
        raise SystemExit(f"no such function(s): {', '.join(sorted(missing))}")
    mutants: list[Mutant] = []
    seen_sources = set()
    for function, node, statement, validation in finder.found:
        if (node.lineno, node.col_offset, type(node)) in seen_sources:
            continue  # an `if` test is met twice (once as the test, once in the walk)
        seen_sources.add((node.lineno, node.col_offset, type(node)))
        old = ast.get_source_segment(source, node)
        for kind, new in _variants(node):
            text = ast.unparse(new)
            lines = sorted({*range(node.lineno, node.end_lineno + 1), statement.lineno})
            mutants.append(Mutant(len(mutants), function, node.lineno, kind, _one_line(old), text,
                                  (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset),
                                  lines, validation))  # fmt: skip
    return mutants


def apply_mutant(source: str, m: Mutant) -> str:
    """``source`` with the node of ``m`` replaced by its mutation (parenthesized when it is not
    an atom, so precedence cannot change: ``-(a + b)`` becomes ``(a + b)``, not ``a + b``)."""
    lines = source.splitlines(keepends=True)
    begin, end = _offset(lines, *m.start), _offset(lines, *m.end)
    new = m.new
    node = ast.parse(new, mode="exec").body[0]
    expression = isinstance(node, ast.Expr)
    if expression and not isinstance(node.value, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)):
        new = f"({new})"
    return source[:begin] + new + source[end:]


# --------------------------------------------------------------------------- the scratch copy

def make_tree(dest: Path, tree: str, modules: list[str]) -> None:
    """``git archive HEAD`` of the repository into ``dest``, then the working tree's version of
    the ``modules`` to mutate (tree="head"), or of every file that differs from HEAD
    (tree="worktree": the suite as it is now, uncommitted tests included). Files keep their
    timestamps, so a CMake build in ``dest`` stays incremental across calls."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="tar")
    changed = list(modules)
    if tree == "worktree":
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-m", "-o", "--exclude-standard"],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        changed += out.splitlines()
    for rel in changed:
        src, dst = ROOT / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.exists():
            dst.unlink()  # deleted in the working tree


def installed_extension() -> Path:
    found = glob.glob(str(ROOT / ".venv/lib/python*/site-packages/fastrl/_C*.so"))
    if not found:
        raise SystemExit("no built fastrl._C in .venv (run `make setup`)")
    return Path(found[0])


def scratch_env(scratch: Path, extension: Path | None) -> dict[str, str]:
    """Imports ``fastrl`` from the scratch copy: the editable install's finder (which maps it to
    the working tree) is turned off and the copy goes first on the path. The finder stands aside
    only when SKBUILD_EDITABLE_SKIP lists its build directory (a "1" is not enough)."""
    finders = [getattr(f, "path", None) for f in sys.meta_path if type(f).__module__.startswith("_editable_skbc")]
    skip = os.pathsep.join(p for p in finders if p)
    env = dict(os.environ, SKBUILD_EDITABLE_SKIP=skip, PYTHONPATH=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    env.pop("FASTRL_BACKEND", None)
    if extension is not None:
        env["FASTRL_EXTENSION"] = str(extension)
    return env


def check_imports(scratch: Path, env: dict[str, str]) -> None:
    """Fails unless the scratch copy's fastrl and a compiled extension are what a test imports."""
    code = ("import fastrl.ops, fastrl._native as n; print(fastrl.__file__); "
            "print(n._C.__file__ if n._C is not None else 'missing: ' + str(n.load_error))")
    out = subprocess.run([sys.executable, "-c", code], cwd=scratch, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"importing fastrl from {scratch} failed:\n{out.stderr[-2000:]}")
    package, extension = out.stdout.split("\n")[:2]
    if not (package.startswith(str(scratch)) and extension.startswith(str(scratch))):
        raise SystemExit(f"the scratch copy is not what the tests import: fastrl={package}, _C={extension}")
    print(f"fastrl from {package}\n_C from {extension}")


# --------------------------------------------------------------------------- running the tests

class PytestServer:
    """A child process that imports the slow modules (torch, hypothesis, pytest) once and then
    forks one process per test run, so a mutant costs its tests and their collection only. It
    never imports fastrl: each forked run imports the scratch copy as it is at that moment."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        cmd = ["nice", "-n", "10", sys.executable, str(Path(__file__).resolve()), "--serve"]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self.cwd = cwd

    def run(self, args: list[str], log: Path, timeout: float) -> tuple[str, float]:
        """("passed" | "failed" | "timeout" | "no tests", seconds)."""
        shutil.rmtree(self.cwd / ".hypothesis", ignore_errors=True)  # no examples saved by an earlier mutant
        self.proc.stdin.write(json.dumps({"args": args, "log": str(log), "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        rc = reply["rc"]
        # 1: a test failed; 2: a test module did not import; 3, < 0: pytest crashed (a mutant can
        # do all that); 4: a usage error (a test id not found, or a conftest that did not import);
        # 5: nothing ran (a tool error)
        status = {0: "passed", "timeout": "timeout", 4: "usage error", 5: "no tests"}.get(rc, "failed")
        return status, reply["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve() -> None:
    """The server's side of PytestServer: one JSON request per line on stdin, one reply each."""
    import hypothesis  # noqa: F401  (imported once, here, for every forked run)
    import pytest
    import torch  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the test run
            code = 3
            try:
                os.setpgid(0, 0)  # its own process group, so a timeout kills what it started too
                devnull = os.open(os.devnull, os.O_RDONLY)
                log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(devnull, 0)
                os.dup2(log, 1)
                os.dup2(log, 2)
                code = int(pytest.main(request["args"]))
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        with contextlib.suppress(OSError):  # the child may have done it first
            os.setpgid(pid, pid)
        rc = _wait(pid, request["timeout"])
        print(json.dumps({"rc": rc, "seconds": round(time.monotonic() - start, 2)}), flush=True)


def _wait(pid: int, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.05)


_PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", "--require-extension"]


def covering_tests(scratch: Path, module: str) -> dict[int, set[str]]:
    """line -> test ids that ran it, from the baseline's coverage contexts ("" = at import)."""
    out = scratch / "coverage.json"
    subprocess.run([sys.executable, "-m", "coverage", "json", "--show-contexts", "-q", "-o", str(out)],
                   cwd=scratch, check=True)  # fmt: skip
    files = json.loads(out.read_text())["files"]
    data = next((v for k, v in files.items() if str(Path(scratch, k)).endswith(module)), None)
    if data is None:
        return {}
    return {int(line): {c.split("|")[0] for c in contexts} for line, contexts in data["contexts"].items()}


def run_target(target: Target, server: PytestServer, scratch: Path, logs: Path, deadline: float,
               confirm: bool = True) -> dict:
    """Baseline, then every mutant of ``target``. Returns its JSON record."""
    path = scratch / target.module
    original = path.read_text()
    print(f"\n== {target.name}: {target.module} ({', '.join(target.functions)})", flush=True)
    mutants = find_mutants(original, target.functions)
    for m in mutants:
        m.status = "validation" if m.validation else "not run"
    if time.monotonic() > deadline:
        print("out of time: not run", flush=True)
        return {**asdict(target), "counts": _counts(mutants), "mutants": [asdict(m) for m in mutants]}
    cov = [f"--cov={path.parent}", "--cov-context=test", "--cov-report="]
    log = logs / f"{target.name}-baseline.log"
    status, baseline = server.run([*target.tests, *target.pytest_args, *_PYTEST, *cov], log, timeout=3600)
    if status != "passed":
        raise SystemExit(f"the tests fail without any mutant ({status}); see {log}")
    covered = covering_tests(scratch, target.module)
    timeout = max(60.0, 3 * baseline)
    print(f"baseline {baseline:.0f} s under coverage; timeout per mutant {timeout:.0f} s", flush=True)
    try:
        for m in mutants:
            if m.validation or time.monotonic() > deadline:
                continue  # stays "not run"
            mutated = apply_mutant(original, m)
            try:
                compile(mutated, str(path), "exec")
            except SyntaxError:
                m.status = "invalid"
                continue
            ids = set().union(*(covered.get(line, set()) for line in m.lines))
            if not ids:
                m.status = "uncovered"  # no test runs this line: survives without running
                print(f"  {m.id:4d} uncovered {target.module}:{m.line} {m.kind}: {m.old} -> {m.new}", flush=True)
                continue
            selected = [] if "" in ids else sorted(ids)  # "": run at import, so by every test
            path.write_text(mutated)
            log = logs / f"{target.name}-{m.id}.log"
            status, m.seconds = server.run([*(selected or target.tests), *target.pytest_args, *_PYTEST], log, timeout)
            m.tests = len(selected)
            # a survivor is confirmed on the whole test files; a usage error may be a test id
            # pytest does not take back, so the whole files decide that too
            if selected and (status == "usage error" or (status == "passed" and confirm)):
                status, more = server.run([*target.tests, *target.pytest_args, *_PYTEST], log, timeout)
                m.seconds += more
                m.tests = 0
            path.write_text(original)
            if status == "no tests":
                raise SystemExit(f"no test ran for mutant {m.id}; see {log}")
            m.status = {"passed": "survived", "timeout": "timeout"}.get(status, "killed")
            print(f"  {m.id:4d} {m.status:8s} {m.seconds:5.0f} s  {target.module}:{m.line} {m.kind}: "
                  f"{m.old} -> {m.new}", flush=True)  # fmt: skip
    finally:
        path.write_text(original)
    return {**asdict(target), "baseline_seconds": baseline, "timeout_seconds": timeout,
            "counts": _counts(mutants), "mutants": [asdict(m) for m in mutants]}  # fmt: skip


def _counts(mutants: list[Mutant]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in mutants:
        counts[m.status] = counts.get(m.status, 0) + 1
    return counts


def score(counts: dict[str, int]) -> float | None:
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    alive = counts.get("survived", 0) + counts.get("uncovered", 0)
    return 100.0 * killed / (killed + alive) if killed + alive else None


def print_table(records: list[dict]) -> None:
    cols = ["killed", "timeout", "survived", "uncovered", "not run", "validation"]
    print(f"\n{'target':<26} {'mutants':>7} " + " ".join(f"{c:>10}" for c in cols) + f" {'score':>7}")
    for r in records:
        c, s = r["counts"], score(r["counts"])
        total = sum(v for k, v in c.items() if k not in ("validation", "invalid"))
        shown = "-" if s is None else f"{s:.1f}%"
        print(f"{r['name']:<26} {total:>7} " + " ".join(f"{c.get(k, 0):>10}" for k in cols) + f" {shown:>7}")
    print("\nsurvivors (file:line kind: old -> new); each is equivalent or a test gap:")
    for r in records:
        for m in r["mutants"]:
            if m["status"] in ("survived", "uncovered"):
                print(f"  {r['module']}:{m['line']} [{m['function']}] {m['kind']}: {m['old']} -> {m['new']}"
                      + ("  (no test runs it)" if m["status"] == "uncovered" else ""))


# --------------------------------------------------------------------------- C++

def run_cpp(scratch: Path, logs: Path) -> list[dict]:
    """Builds the scratch copy, checks its tests pass, then each CPP_MUTANTS entry: apply,
    rebuild (incremental), run its tests on that build, restore. Ends with a clean rebuild."""
    build = scratch / "build"
    dirty = build / "mutant-applied"  # a run stopped mid-mutant leaves a mutant's objects behind
    if dirty.exists():
        shutil.rmtree(build)
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}")
    with open(logs / "cpp-configure.log", "w") as f:
        subprocess.run(["nice", "-n", "10", "cmake", "-S", str(scratch), "-B", str(build), "-G", "Ninja",
                        "-DFASTRL_CUDA=0", f"-DPython_EXECUTABLE={sys.executable}"],
                       check=True, env=env, stdout=f, stderr=subprocess.STDOUT)  # fmt: skip

    def rebuild(log: Path) -> bool:
        with open(log, "w") as f:
            cmd = ["nice", "-n", "10", "cmake", "--build", str(build), "-j1"]
            return subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode == 0

    if not rebuild(logs / "cpp-build.log"):
        raise SystemExit(f"the scratch copy does not build; see {logs / 'cpp-build.log'}")
    extension = Path(glob.glob(str(build / "_C*.so"))[0])
    test_env = scratch_env(scratch, extension)
    check_imports(scratch, test_env)
    server = PytestServer(scratch, test_env)
    records = []
    try:
        files = sorted({t for m in CPP_MUTANTS for t in m.tests})
        status, baseline = server.run([*files, *_PYTEST], logs / "cpp-baseline.log", timeout=3600)
        if status != "passed":
            raise SystemExit(f"the tests fail on the unmutated build ({status}); see {logs / 'cpp-baseline.log'}")
        print(f"C++ baseline: {baseline:.0f} s", flush=True)
        for m in CPP_MUTANTS:
            path = scratch / m.file
            original = path.read_text()
            if original.count(m.old) != 1:
                raise SystemExit(f"C++ mutant {m.name}: its text must occur once in {m.file}")
            dirty.touch()
            path.write_text(original.replace(m.old, m.new))
            start = time.monotonic()
            try:
                built = rebuild(logs / f"cpp-{m.name}-build.log")
                build_seconds = time.monotonic() - start
                status, seconds = "build failed", 0.0
                if built:
                    status, seconds = server.run([*m.tests, *_PYTEST], logs / f"cpp-{m.name}.log",
                                                 timeout=max(120.0, 3 * baseline))  # fmt: skip
            finally:
                path.write_text(original)
            status = {"passed": "survived", "failed": "killed"}.get(status, status)
            failed = _first_failure(logs / f"cpp-{m.name}.log") if status == "killed" else ""
            print(f"  {m.name:22s} {status:9s} build {build_seconds:4.0f} s, tests {seconds:4.0f} s  {failed}",
                  flush=True)  # fmt: skip
            records.append({**asdict(m), "status": status, "build_seconds": round(build_seconds, 1),
                            "test_seconds": seconds, "first_failure": failed})  # fmt: skip
    finally:
        server.close()
        if rebuild(logs / "cpp-build.log"):  # the unmutated build again
            dirty.unlink(missing_ok=True)
    return records


def _first_failure(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("FAILED ") or line.startswith("ERROR "):
            return line.split(" - ")[0]
    return ""


# --------------------------------------------------------------------------- main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--preset", nargs="+", metavar="NAME", help="presets to run, in order; 'all' for every one")
    p.add_argument("--module", help="a module to mutate (path from the repository root)")
    p.add_argument("--functions", nargs="+", help="with --module: the functions to mutate (Class.method)")
    p.add_argument("--tests", nargs="+", help="with --module: the test files to run")
    p.add_argument("--markers", help='with --module: a pytest -m expression, e.g. "not slow"')
    p.add_argument("--cpp", action="store_true", help="run the hand-made C++ mutants")
    p.add_argument("--list", action="store_true", help="list the presets and how many mutants each has")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--tree", choices=["worktree", "head"], default="worktree",
                   help="scratch copy: HEAD plus every file changed in the working tree (default), or HEAD plus "
                        "the mutated module only")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="stop starting mutants after this long (the rest are reported 'not run')")
    p.add_argument("--no-confirm", dest="confirm", action="store_false",
                   help="report survivors of the selected tests without running the whole test files again")
    p.add_argument("--fail-under", type=float, metavar="SCORE",
                   help="exit 1 when a target's score (%% of killed among run mutants) is below SCORE (CI)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve()
        return 0

    targets = []
    if args.preset:
        names = [t.name for t in PRESETS] if args.preset == ["all"] else args.preset
        by_name = {t.name: t for t in PRESETS}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            p.error(f"unknown preset(s) {unknown}; choose from {list(by_name)}")
        targets = [by_name[n] for n in names]
    if args.module:
        if not (args.functions and args.tests):
            p.error("--module needs --functions and --tests")
        marks = ["-m", args.markers] if args.markers else []
        targets.append(Target(Path(args.module).stem, args.module, args.functions, args.tests, marks))
    if args.list:
        for t in targets or PRESETS:
            ms = find_mutants((ROOT / t.module).read_text(), t.functions)
            n_check = sum(m.validation for m in ms)
            print(f"{t.name:<26} {len(ms) - n_check:4d} mutants (+{n_check} validation)  {t.module}")
        return 0
    if not targets and not args.cpp:
        p.error("nothing to do: give --preset, --module or --cpp")

    deadline = time.monotonic() + (float("inf") if args.budget_minutes is None else args.budget_minutes * 60)
    logs = SCRATCH / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result: dict = {"tree": args.tree, "head": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                    capture_output=True, text=True).stdout.strip(), "targets": []}  # fmt: skip
    started = time.monotonic()
    if targets:
        scratch = SCRATCH / "py"
        shutil.rmtree(scratch, ignore_errors=True)
        make_tree(scratch, args.tree, [t.module for t in targets])
        shutil.copy2(installed_extension(), scratch / "fastrl")
        env = scratch_env(scratch, None)
        check_imports(scratch, env)
        server = PytestServer(scratch, env)
        try:
            for t in targets:
                result["targets"].append(run_target(t, server, scratch, logs, deadline, args.confirm))
                if args.json:  # after each target, so an interrupted run keeps what it measured
                    args.json.write_text(json.dumps(result, indent=1) + "\n")
        finally:
            server.close()
        print_table(result["targets"])
    if args.cpp:
        scratch = SCRATCH / "cpp"
        make_tree(scratch, args.tree, [])
        result["cpp"] = run_cpp(scratch, logs)
        survivors = [m["name"] for m in result["cpp"] if m["status"] != "killed"]
        print(f"C++ mutants killed: {len(result['cpp']) - len(survivors)}/{len(result['cpp'])}"
              + (f"; not killed: {', '.join(survivors)}" if survivors else ""))
    result["minutes"] = round((time.monotonic() - started) / 60, 1)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{result['minutes']} min; logs in {logs}")
    if args.fail_under is not None:
        low = [f"{t['name']} {s:.1f}%" for t in result["targets"]
               if (s := score(t["counts"])) is not None and s < args.fail_under]
        if low:
            print(f"mutation score below {args.fail_under}%: {', '.join(low)}")
            return 1
    return 1 if args.cpp and survivors else 0


if __name__ == "__main__":
    sys.exit(main())
