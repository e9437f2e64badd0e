"""The native envs' registry (csrc/core/envs/registry.h, read through fastrl._C) against what
restates it: the PyTorch fallback's classes, gymnasium's own envs, the lists of native envs in the
docs, and the Philox constants' fallback copy."""

import inspect
import math
import pathlib
import re

import gymnasium
import pytest
import torch
from gymnasium.envs.registration import load_env_creator

import fastrl.envs as fenvs
from fastrl import _native
from fastrl.envs import rng
from fastrl.envs.registry import FALLBACK_SPECS, NativeEnvSpec
from tests.conftest import requires_native

ROOT = pathlib.Path(__file__).resolve().parents[2]


@requires_native
def test_fallback_classes_declare_the_extensions_envs():
    """Same ids in the same order, same dimensions, same keyword arguments (names, order,
    defaults, which are flags) in the C++ headers and in fastrl/envs/classic.py."""
    native = {k: NativeEnvSpec.from_extension(k, v) for k, v in _native._C.native_envs().items()}
    assert list(native) == list(FALLBACK_SPECS) == list(fenvs.NATIVE_ENVS)
    for env_id, spec in native.items():
        fallback = FALLBACK_SPECS[env_id]
        assert spec == fallback
        assert list(spec.params.items()) == list(fallback.params.items())  # order and bool-ness too
        assert [type(v) for v in spec.params.values()] == [type(v) for v in fallback.params.values()]


@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_spec_is_gymnasiums(env_id):
    """Dimensions and keyword arguments as gymnasium's own env has them: every keyword argument
    of its constructor but render_mode, with its default (a bool default for a flag)."""
    spec = fenvs.NATIVE_SPECS[env_id]
    g = gymnasium.make(env_id)
    g.reset(seed=0)
    assert spec.state_dim == len(g.unwrapped.state)
    assert (spec.obs_dim,) == g.observation_space.shape
    signature = inspect.signature(load_env_creator(gymnasium.spec(env_id).entry_point))
    gym_params = {k: p.default for k, p in signature.parameters.items() if k != "render_mode"}
    assert set(spec.params) == set(gym_params)
    for name, default in spec.params.items():
        assert default == gym_params[name]
        assert isinstance(default, bool) == isinstance(gym_params[name], bool), name


def test_op_params_follow_the_spec_order():
    spec = NativeEnvSpec(id="X-v0", state_dim=1, obs_dim=1, reset_draws=1, params={"a": 1.0, "flag": False})
    assert spec.op_params({"flag": True, "a": 2.5}) == [2.5, 1.0]


@pytest.mark.parametrize("backend", ["native", "torch"])
@pytest.mark.parametrize(
    "env_id, kwargs, state, action, outcome, default, changed",
    [
        # A step that does not terminate: reward 1, or Sutton-Barto's 0.
        ("CartPole-v1", {"sutton_barto_reward": True}, [0.0, 0.0, 0.0, 0.0], 1, "reward", 1.0, 0.0),
        # Past the goal (position 0.49 + 0.0197... >= 0.5), slower than the goal velocity 0.05.
        ("MountainCar-v0", {"goal_velocity": 0.05}, [0.49, 0.02], 1, "terminated", True, False),
        ("MountainCarContinuous-v0", {"goal_velocity": 0.05}, [0.44, 0.02], [0.0], "terminated", True, False),
        # From rest at theta = pi/2: theta_dot = 3 g / 2 * sin(pi/2) * dt = 0.075 g.
        ("Pendulum-v1", {"g": 3.0}, [math.pi / 2, 0.0], [0.0], "theta_dot", 0.75, 0.225),
    ],
)
def test_keyword_arguments_reach_the_physics_by_name(env_id, kwargs, state, action, outcome, default, changed,
                                                     backend):
    """One step, worked by hand, where the keyword argument decides the outcome, on both backends."""
    if backend == "native" and _native._C is None:
        pytest.skip("fastrl._C not built")
    previous = _native.get_backend()
    _native.set_backend(backend)
    try:
        got = []
        for kw in ({}, kwargs):
            env = fenvs.make(env_id, 1, seed=0, dtype=torch.float64, **kw)
            env.reset()
            env.set_state(torch.tensor([state], dtype=torch.float64))
            obs, reward, terminated, _, _ = env.step(torch.tensor([action]))
            got.append({"reward": reward, "terminated": terminated, "theta_dot": obs[:, -1]}[outcome].item())
    finally:
        _native.set_backend(previous)
    assert got == pytest.approx([default, changed], rel=1e-12)


# Philox4x32-10 known-answer vectors of Random123 (kat_vectors: counter, key -> output).
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, want", PHILOX_KAT)
def test_philox_known_answers(counter, key, want):
    """The PyTorch Philox (with the constants it read from _C, or its copy) gives Random123's
    answers; the native draws equal its draws (tests/envs/test_vector.py)."""
    c = [torch.tensor([x], dtype=torch.int64) for x in counter]
    even, odd = rng._philox4x32_10(c, torch.tensor([key[0]]), torch.tensor([key[1]]))
    assert (int(even[0, 0]), int(odd[0, 0]), int(even[1, 0]), int(odd[1, 0])) == want


@requires_native
def test_philox_fallback_copy_equals_the_kernels():
    assert _native._C.philox_constants() == rng.FALLBACK_PHILOX
    assert rng.PHILOX == rng.FALLBACK_PHILOX


# An enumeration of gymnasium ids: "A-v1, B-v0 and C-v1" (across line breaks and indentation too).
_ID = r"[A-Z][A-Za-z]*-v\d+"
_LIST = re.compile(rf"{_ID}(?:(?:,\s*|,?\s+and\s+){_ID})+")


def listed_envs(text: str) -> list[set[str]]:
    """The sets of ids of every enumeration of three ids or more in ``text``."""
    found = [set(re.findall(_ID, m.group(0))) for m in _LIST.finditer(text)]
    return [ids for ids in found if len(ids) >= 3]


@pytest.mark.parametrize("path", ["docs/envs.md", "README.md", "fastrl/envs/__init__.py", "fastrl/algos/common.py"])
def test_lists_of_native_envs_are_the_registry(path):
    """Every list of native envs written out in the docs and the code names exactly the registry's
    (docs/envs.md must have one)."""
    lists = listed_envs((ROOT / path).read_text())
    if path == "docs/envs.md":
        assert lists, "docs/envs.md lists the native envs"
    for ids in lists:
        assert ids == set(fenvs.NATIVE_ENVS), f"{path} lists {sorted(ids)}"


def test_listed_envs_finds_enumerations():
    text = "CartPole-v1, Acrobot-v1 and\n    Pendulum-v1 run natively; Foo-v0 and Bar-v1 do not"
    assert listed_envs(text) == [{"CartPole-v1", "Acrobot-v1", "Pendulum-v1"}]
