"""Bad input and edge cases of the envs (issue 12, items 8-11), on every backend: the native
kernels, their PyTorch fallback and the gymnasium-backed envs of other ids.

- step() before reset() raises gymnasium's ResetNeeded;
- max_episode_steps: ints that do not fit the int32 episode lengths are refused, None means no
  time limit, and lengths saturate instead of overflowing;
- the gymnasium-backed envs check actions as the native ones do, and refuse spaces that are not
  one tensor per env;
- set_state / load_state_dict validate what they load; numpy integers work wherever ints do.
"""

import pathlib
import shutil
import subprocess
import sys
import textwrap

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded

import fastrl.envs as fenvs
from tests.conftest import requires_native
from tests.envs.helpers import FALLBACK_PENDULUM

FALLBACK_IDS = ["FrozenLake-v1", FALLBACK_PENDULUM]


def zero_actions(env) -> torch.Tensor:
    space = env.single_action_space
    if isinstance(space, gymnasium.spaces.Discrete):
        return torch.zeros(env.num_envs, dtype=torch.int64)
    return torch.zeros(env.num_envs, *space.shape)


# -- item 8: step before reset --------------------------------------------------------------------
@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_step_before_reset_raises(env_id, backend):
    env = fenvs.make(env_id, 3, seed=5)
    with pytest.raises(ResetNeeded, match=r"step\(\) before calling env.reset\(\)"):
        env.step(zero_actions(env))
    assert not env._state.any() and not env._elapsed.any()  # nothing stepped
    with pytest.raises(ResetNeeded):
        env.set_state(torch.zeros(3, env.spec_.state_dim))
    # make's seed is the first reset's: the same trajectory as a fresh env reset with it.
    want, _ = fenvs.make(env_id, 3).reset(seed=5)
    obs, _ = env.reset()
    assert torch.equal(obs, want)
    env.step(zero_actions(env))


@pytest.mark.parametrize("env_id", FALLBACK_IDS)
def test_gymnasium_env_step_before_reset_raises(env_id):
    env = fenvs.make(env_id, 2, seed=0)
    with pytest.raises(ResetNeeded):
        env.step(zero_actions(env))
    env.reset()
    env.step(zero_actions(env))


def test_loaded_env_needs_no_reset(backend):
    """load_state_dict restores whether the env was reset: a loaded env continues exactly, and a
    state dict of an env never reset leaves the new one needing a reset."""
    env = fenvs.make("CartPole-v1", 4, seed=1, dtype=torch.float64)
    fresh = env.state_dict()
    env.reset()
    env.step(torch.tensor([0, 1, 1, 0]))
    saved = env.state_dict()
    want = env.step(torch.tensor([1, 1, 0, 0]))[0]
    other = fenvs.make("CartPole-v1", 4, dtype=torch.float64)
    other.load_state_dict(saved)
    assert torch.equal(other.step(torch.tensor([1, 1, 0, 0]))[0], want)
    other.load_state_dict(fresh)
    with pytest.raises(ResetNeeded):
        other.step(torch.tensor([1, 1, 0, 0]))


# -- item 9: max_episode_steps ------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["CartPole-v1", "FrozenLake-v1"])
@pytest.mark.parametrize("steps", [2**31, np.int64(2**31), 2**63, 2**64])
def test_max_episode_steps_that_do_not_fit_are_refused(env_id, steps):
    with pytest.raises(ValueError, match=r"max_episode_steps must be <= 2\*\*31 - 1.*None for no time limit"):
        fenvs.make(env_id, 2, max_episode_steps=steps)


@pytest.mark.parametrize("steps, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_max_episode_steps(steps, error):
    for env_id in ("Pendulum-v1", "FrozenLake-v1"):
        with pytest.raises(error, match="max_episode_steps"):
            fenvs.make(env_id, 2, max_episode_steps=steps)


def test_largest_time_limit_and_saturating_lengths(backend):
    """With max_episode_steps = 2**31 - 1 an episode truncates at that step; without a limit
    lengths stay at 2**31 - 1 (int32 lengths saturate) and nothing truncates."""
    top = 2**31 - 1
    env = fenvs.make("Pendulum-v1", 2, seed=0, max_episode_steps=top, autoreset_mode="same_step")
    env.reset()
    env.set_state(torch.zeros(2, 2), torch.tensor([top - 2, top - 1]))
    _, _, _, trunc, info = env.step(torch.zeros(2, 1))
    assert trunc.tolist() == [False, True] and info["episode"]["l"].tolist() == [0, top]
    _, _, _, trunc, info = env.step(torch.zeros(2, 1))
    assert trunc.tolist() == [True, False] and info["episode"]["l"].tolist() == [top, 0]

    env = fenvs.make("Pendulum-v1", 2, seed=0, max_episode_steps=None)
    assert env.max_episode_steps is None
    env.reset()
    env.set_state(torch.zeros(2, 2), torch.tensor([top - 1, top]))
    for _ in range(3):
        _, _, _, trunc, info = env.step(torch.zeros(2, 1))
        assert not trunc.any() and not info["_episode"].any()
        assert env.episode_lengths.tolist() == [top, top]


def test_no_time_limit_runs_past_the_default(backend):
    """The spec's limit (Pendulum: 200) applies by default; None removes it."""
    default = fenvs.make("Pendulum-v1", 1, seed=0)
    unlimited = fenvs.make("Pendulum-v1", 1, seed=0, max_episode_steps=None)
    truncated = {}
    for name, env in (("default", default), ("none", unlimited)):
        env.reset()
        truncated[name] = [bool(env.step(torch.zeros(1, 1))[3]) for _ in range(450)]
    assert [t for t, x in enumerate(truncated["default"], 1) if x] == [200, 401]
    assert not any(truncated["none"])


def test_no_time_limit_on_gymnasium_envs():
    """FrozenLake without slipping, always pushing left: the agent never moves, so only the time
    limit ends episodes (spec: 100 steps)."""
    def truncations(**kwargs):
        env = fenvs.make("FrozenLake-v1", 1, seed=0, is_slippery=False, **kwargs)
        env.reset()
        return [t for t in range(1, 251) if bool(env.step(torch.zeros(1, dtype=torch.int64))[3])]

    assert truncations() == [100, 201]
    assert truncations(max_episode_steps=7)[:2] == [7, 15]
    assert truncations(max_episode_steps=None) == []


@requires_native
def test_op_max_episode_steps_range():
    env = fenvs.make("CartPole-v1", 2, seed=0)
    env.reset()
    tensors = (env._state, env._elapsed, env._episode_return, env._autoreset, env._resets, env._seeds)
    action = torch.zeros(2, dtype=torch.int64)
    for bad in (-1, 2**31):
        with pytest.raises(ValueError, match="max_episode_steps"):
            torch.ops.fastrl.env_step("CartPole-v1", *tensors, action, [0.0], bad, False)
    env._elapsed.fill_(2**31 - 1)  # 0 is no time limit: lengths saturate, nothing truncates
    out = torch.ops.fastrl.env_step("CartPole-v1", *tensors, action, [0.0], 0, False)
    assert not out[3].any() and env._elapsed.tolist() == [2**31 - 1] * 2


# -- item 10: the gymnasium-backed envs ---------------------------------------------------------------
BAD_ACTIONS = [
    # (native id, gymnasium-backed id with the same action space, actions, error, match)
    ("CartPole-v1", "CartPole-v0", torch.zeros(3, dtype=torch.int64), ValueError, r"shape \(4,\), got \(3,\)"),
    ("CartPole-v1", "CartPole-v0", torch.zeros(4), TypeError, "integer tensor"),
    ("CartPole-v1", "CartPole-v0", torch.tensor([0.0, 1.0, 1.0, 0.0]), TypeError, "integer tensor"),
    ("CartPole-v1", "CartPole-v0", torch.tensor([True, False, True, True]), TypeError, "integer tensor"),
    ("CartPole-v1", "CartPole-v0", torch.tensor([0, 1, 2, 0]), ValueError, r"in \[0, 1\]"),
    ("CartPole-v1", "CartPole-v0", torch.tensor([0, 1, -1, 0]), ValueError, r"in \[0, 1\]"),
    ("CartPole-v1", "CartPole-v0", np.array([0, 1, 2, 0]), ValueError, r"in \[0, 1\]"),
    ("CartPole-v1", "CartPole-v0", [0, 1, 0, 1], TypeError, "must be a torch.Tensor, got list"),
    ("Pendulum-v1", FALLBACK_PENDULUM, torch.zeros(4), ValueError, r"shape \(4, 1\), got \(4,\)"),
    ("Pendulum-v1", FALLBACK_PENDULUM, torch.zeros(4, 1, dtype=torch.int64), TypeError, "floating-point"),
    ("Pendulum-v1", FALLBACK_PENDULUM, torch.tensor([[0.0], [float("nan")], [0.0], [0.0]]), ValueError, "NaN"),
]


@pytest.mark.filterwarnings("ignore:.*out of date:DeprecationWarning")  # CartPole-v0
@pytest.mark.parametrize("native_id, gym_id, actions, error, match", BAD_ACTIONS)
def test_gymnasium_envs_check_actions_like_native_ones(native_id, gym_id, actions, error, match, backend):
    """The same bad actions raise the same errors on a native env and on a gymnasium-backed one,
    which still steps afterwards (gymnasium's own envs would have failed halfway)."""
    for env_id in (native_id, gym_id):
        env = fenvs.make(env_id, 4, seed=0)
        env.reset()
        with pytest.raises(error, match=match):
            env.step(actions)
        env.step(zero_actions(env))


def test_gymnasium_env_actions_of_other_dtypes():
    """int32 and numpy actions are converted for the gymnasium-backed envs as for native ones,
    and float64 Box actions become the space's float32."""
    steps = []
    for actions in (torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2], dtype=torch.int32), np.array([0, 1, 2])):
        env = fenvs.make("FrozenLake-v1", 3, seed=0, is_slippery=False)
        env.reset()
        steps.append(env.step(actions)[0])
    assert all(torch.equal(s, steps[0]) for s in steps) and steps[0].tolist() == [0, 4, 1]
    env = fenvs.make(FALLBACK_PENDULUM, 2, seed=0)
    env.reset()
    env.step(torch.tensor([[0.5], [-3.0]], dtype=torch.float64))


@pytest.mark.parametrize("env_id, space", [("Blackjack-v1", "Tuple")])
def test_spaces_that_are_not_one_tensor_are_refused(env_id, space):
    with pytest.raises(ValueError, match=f"{env_id} has the observation space {space}"):
        fenvs.make(env_id, 2)


def test_gymnasium_env_outputs_are_tensors():
    env = fenvs.make("Taxi-v4", 3, seed=0)
    obs, _ = env.reset()
    assert obs.dtype == torch.int64 and obs.shape == (3,)
    out = env.step(torch.tensor([0, 1, 2]))
    assert all(isinstance(x, torch.Tensor) for x in out[:4])


# -- item 11: set_state, load_state_dict, numpy integers -----------------------------------------------
@pytest.mark.parametrize(
    "elapsed, error, match",
    [
        (-5, ValueError, r"elapsed_steps must be in \[0, 2147483647\], got -5"),
        (1.7, TypeError, "elapsed_steps"),
        (True, TypeError, "elapsed_steps"),
        (2**31, ValueError, "elapsed_steps"),
        (torch.tensor([1.0, 2.0, 3.0]), TypeError, "elapsed_steps"),
        (torch.tensor([1, -2, 3]), ValueError, "elapsed_steps"),
        (np.array([1, 2]), ValueError, r"elapsed_steps must be an int or have shape \(3,\)"),
        ("7", TypeError, "elapsed_steps"),
    ],
)
def test_set_state_refuses_bad_elapsed_steps(elapsed, error, match, backend):
    env = fenvs.make("CartPole-v1", 3, seed=0)
    env.reset()
    before = env.state_dict()
    with pytest.raises(error, match=match):
        env.set_state(torch.zeros(3, 4), elapsed)
    assert all(torch.equal(v, before[k]) for k, v in env.state_dict().items() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize(
    "state, error, match",
    [
        (torch.zeros(3, 3), ValueError, r"shape \(3, 4\)"),
        (torch.full((3, 4), float("nan")), ValueError, "finite"),
        (torch.full((3, 4), float("inf")), ValueError, "finite"),
        (torch.zeros(3, 4, dtype=torch.complex64), TypeError, "real"),
    ],
)
def test_set_state_refuses_bad_states(state, error, match):
    env = fenvs.make("CartPole-v1", 3, seed=0)
    env.reset()
    with pytest.raises(error, match=match):
        env.set_state(state)


def test_set_state_takes_integer_elapsed_steps_of_any_kind():
    env = fenvs.make("CartPole-v1", 3, seed=0)
    env.reset()
    for elapsed in (np.int64(7), np.int32(7), 7, [7, 7, 7], np.array([7, 7, 7]), torch.tensor(7, dtype=torch.int16)):
        env.set_state(torch.zeros(3, 4), elapsed)
        assert env.episode_lengths.tolist() == [7, 7, 7]


def state_dict_of(env_id, n=4, **kwargs):
    env = fenvs.make(env_id, n, seed=0, **kwargs)
    env.reset()
    return env.state_dict()


@pytest.mark.parametrize(
    "make_state, error, match",
    [
        (lambda: state_dict_of("Acrobot-v1"), ValueError, "'Acrobot-v1' envs, this env is 'CartPole-v1'"),
        (lambda: state_dict_of("CartPole-v1", n=5), ValueError, r"state_dict\['state'\] has shape \(4, 5\)"),
        (lambda: state_dict_of("CartPole-v1", dtype=torch.float64), ValueError, "torch.float64, this env's"),
        (lambda: {k: v for k, v in state_dict_of("CartPole-v1").items() if k != "env_id"}, ValueError,
         r"missing \['env_id'\]"),
        (lambda: state_dict_of("CartPole-v1") | {"elapsed": torch.tensor([0, -1, 0, 0], dtype=torch.int32)},
         ValueError, r"state_dict\['elapsed'\] must be >= 0"),
        (lambda: state_dict_of("CartPole-v1") | {"resets": torch.tensor([-5, 0, 0, 0])},
         ValueError, r"state_dict\['resets'\] must be >= 0"),
        (lambda: state_dict_of("CartPole-v1") | {"state": torch.full((4, 4), float("nan"))}, ValueError, "finite"),
        (lambda: state_dict_of("CartPole-v1") | {"seeded": 1}, TypeError, "seeded"),
        (lambda: state_dict_of("CartPole-v1") | {"seeds": [0, 0, 0, 0]}, TypeError, r"\['seeds'\]"),
        (lambda: [1, 2], TypeError, "dict"),
    ],
)
def test_load_state_dict_refuses_other_envs_and_bad_values(make_state, error, match, backend):
    env = fenvs.make("CartPole-v1", 4, seed=3)
    env.reset()
    before = env.state_dict()
    with pytest.raises(error, match=match):
        env.load_state_dict(make_state())
    after = env.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if isinstance(v, torch.Tensor))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "FrozenLake-v1"])
def test_numpy_integers_work_where_ints_do(env_id, backend):
    def first_obs(num_envs=3, **kwargs):
        return fenvs.make(env_id, num_envs, **kwargs).reset()[0]  # make's seed seeds the first reset

    want = first_obs(seed=7)
    assert torch.equal(first_obs(seed=np.int64(7)), want)
    assert torch.equal(first_obs(np.int64(3), seed=np.uint32(7), max_episode_steps=np.int32(50)), want)
    env = fenvs.make(env_id, np.int64(3), max_episode_steps=np.int64(9))
    assert env.num_envs == 3 and type(env.num_envs) is int and type(env.max_episode_steps) is int
    seeds = [11, 12, 13]
    a, _ = env.reset(seed=seeds)
    for same in (np.array(seeds), [np.int64(s) for s in seeds], torch.tensor(seeds)):
        assert torch.equal(env.reset(seed=same)[0], a)
    assert torch.equal(env.reset(seed=np.int64(11))[0], env.reset(seed=11)[0])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "FrozenLake-v1"])
@pytest.mark.parametrize(
    "seed, error, match",
    [
        (-1, ValueError, r"seed must be in \[0, 9223372036854775807\]"),
        (2**63, ValueError, "seed"),
        (1.5, TypeError, "seed must be an int"),
        ("7", TypeError, "seed must be an int"),
        ([1, 2], ValueError, "one per env"),
        ([1, 2, 3.0], TypeError, "seed must be an int"),
        (np.array([1, 2, -3]), ValueError, "seed"),
    ],
)
def test_bad_seeds(env_id, seed, error, match):
    with pytest.raises(error, match=match):
        fenvs.make(env_id, 3, seed=seed)
    env = fenvs.make(env_id, 3)
    with pytest.raises(error, match=match):
        env.reset(seed=seed)


@pytest.mark.parametrize(
    "env_id, kwargs, error, match",
    [
        ("Pendulum-v1", dict(g=float("nan")), ValueError, "g must be finite"),
        ("Pendulum-v1", dict(g="10"), TypeError, "g must be a real number"),
        ("MountainCar-v0", dict(goal_velocity=float("inf")), ValueError, "goal_velocity must be finite"),
        ("CartPole-v1", dict(sutton_barto_reward="yes"), TypeError, "sutton_barto_reward must be a bool"),
    ],
)
def test_bad_env_kwargs(env_id, kwargs, error, match):
    with pytest.raises(error, match=match):
        fenvs.make(env_id, 2, **kwargs)


def test_numpy_env_kwargs(backend):
    env = fenvs.make("Pendulum-v1", 2, seed=0, g=np.float32(2.5))
    want = fenvs.make("Pendulum-v1", 2, seed=0, g=2.5)
    for e in (env, want):
        e.reset()
    assert torch.equal(env.step(torch.ones(2, 1))[0], want.step(torch.ones(2, 1))[0])
    fenvs.make("CartPole-v1", 2, sutton_barto_reward=np.bool_(True))


# -- injected states far out of range ----------------------------------------------------------------
@requires_native
def test_acrobot_float64_steps_from_angles_of_many_turns():
    """gymnasium wraps Acrobot's angles with while loops, which run for hours from an angle of
    1e15 (forever from inf); fastrl's float64 kernel takes whole turns off first (subprocess: on
    a hang the test fails on the timeout instead of hanging)."""
    script = textwrap.dedent("""
        import math, torch
        import fastrl.envs as fenvs
        env = fenvs.make("Acrobot-v1", 2, dtype=torch.float64, seed=0)
        env.reset()
        env.set_state(torch.tensor([[1e15, 0.5, 0.0, 0.0], [-3e12, -1e300, 1.0, 2.0]], dtype=torch.float64))
        env.step(torch.tensor([1, 2]))
        angles = env.get_state()[:, :2]
        assert bool((angles.abs() <= math.pi).all()), angles
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


UBSAN = ["-fsanitize=undefined,float-cast-overflow", "-fno-sanitize-recover=all"]


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_kernel_loop_has_no_undefined_behaviour_on_extreme_inputs(tmp_path):
    """tests/envs/extreme_states.cpp steps every env through the CPU kernel's loop from huge,
    infinite and NaN states, lengths at 2**31 - 1 and reset counters at 2**63 - 1, built with
    UBSan (float-cast-overflow too, which GCC's -fsanitize=undefined leaves out): signed overflow
    or an out-of-range float-to-int conversion aborts it, a loop that never ends times out."""
    probe = tmp_path / "probe.cpp"
    probe.write_text("int main() { return 0; }\n")
    if subprocess.run(["g++", *UBSAN, str(probe), "-o", str(tmp_path / "probe")], capture_output=True).returncode:
        pytest.skip("g++ cannot link UBSan here")
    here = pathlib.Path(__file__).resolve().parent
    exe = tmp_path / "extreme_states"
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{here.parents[1] / 'csrc'}", *UBSAN,
                    str(here / "extreme_states.cpp"), "-o", str(exe)], check=True, timeout=300)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout == "ok\n", run.stdout + run.stderr
