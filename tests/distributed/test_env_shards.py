"""A shard of envs (``first_env``) is those envs of the whole batch, step by step, on every backend:
what lets torchrun's ranks step the same set of environments at any world size."""

import pytest
import torch

from fastrl import _native, envs
from fastrl.envs import NATIVE_ENVS
from fastrl.envs.minatar import MINATAR_ENVS
from tests.conftest import BACKENDS, backend, requires_native


def _actions(env, n: int, generator: torch.Generator) -> torch.Tensor:
    space = env.single_action_space
    if hasattr(space, "n"):
        return torch.randint(0, int(space.n), (n,), generator=generator)
    low, high = float(space.low[0]), float(space.high[0])
    return low + (high - low) * torch.rand(n, 1, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("env_id", NATIVE_ENVS + tuple(MINATAR_ENVS))
def test_envs_from_first_env_equal_those_envs_of_a_bigger_batch(name, env_id):
    if name == "native" and _native._C is None:
        pytest.skip(f"fastrl._C not built: {_native.load_error}")
    total, first, n = 12, 5, 4
    with backend(name):
        whole = envs.make(env_id, total, seed=7, autoreset_mode="same_step", max_episode_steps=9)
        part = envs.make(env_id, n, seed=7, autoreset_mode="same_step", max_episode_steps=9)
        part.first_env = first
        assert part.first_env == first
        rows = slice(first, first + n)
        assert torch.equal(whole.reset()[0][rows], part.reset()[0])
        g = torch.Generator().manual_seed(0)
        # 9-step episodes: every env resets at least twice, so the reset streams are exercised
        for _ in range(25):
            a = _actions(whole, total, g)
            big, small = whole.step(a), part.step(a[rows])
            for x, y in zip(big[:4], small[:4]):
                assert torch.equal(x[rows], y)
            assert torch.equal(big[4]["final_obs"][rows], small[4]["final_obs"])
        # and a reset with a new seed draws the same initial states
        assert torch.equal(whole.reset(seed=3)[0][rows], part.reset(seed=3)[0])


def test_shards_differ_from_the_first_envs():
    """Without the offset a shard would repeat envs 0..n-1 (the bug this guards against)."""
    part = envs.make("CartPole-v1", 4, seed=7)
    part.first_env = 4
    assert not torch.equal(envs.make("CartPole-v1", 4, seed=7).reset()[0], part.reset()[0])


@requires_native
def test_the_ops_take_first_env_and_default_to_zero():
    env = envs.make("CartPole-v1", 3, seed=1)
    env.reset()  # seeds the streams
    def fresh():
        return [x.clone() if i != 4 else torch.zeros_like(x) for i, x in enumerate(env._op_tensors())]

    clone = fresh()  # index 4: the reset counters, back to 0 (the first reset)
    obs0 = torch.ops.fastrl.env_reset("CartPole-v1", *clone, env._param_list)
    obs_off = torch.ops.fastrl.env_reset("CartPole-v1", *fresh(), env._param_list, first_env=2)
    bigger = envs.make("CartPole-v1", 5, seed=1).reset()[0]
    assert torch.equal(obs0, bigger[:3]) and torch.equal(obs_off, bigger[2:])
    with pytest.raises(ValueError, match="first_env"):
        torch.ops.fastrl.env_reset("CartPole-v1", *clone, env._param_list, first_env=-1)


def test_first_env_is_checked():
    env = envs.make("CartPole-v1", 2, seed=0)
    with pytest.raises(ValueError, match="first_env"):
        env.first_env = -1
    with pytest.raises(TypeError, match="first_env"):
        env.first_env = 1.5
    minatar = envs.make("MinAtar/Breakout-v1", 2, seed=0)
    with pytest.raises(ValueError, match="first_env"):
        minatar.first_env = -1
