"""gymnasium's vector API beyond step: ``close()`` (later calls raise) and partial resets with
``reset(options={"reset_mask": mask})`` (gymnasium >= 1.1), on every backend."""

import math

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.error import ClosedEnvironmentError, ResetNeeded
from gymnasium.vector import SyncVectorEnv

import fastrl.envs as fenvs
from tests.envs.helpers import FALLBACK_PENDULUM, sample_actions, to_torch_actions

N = 6
MASK = np.array([True, False, False, True, False, True])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", FALLBACK_PENDULUM])
def test_close_then_step_or_reset_raises(env_id, backend):
    env = fenvs.make(env_id, 2, seed=0)
    env.reset()
    actions = to_torch_actions(sample_actions("Pendulum-v1" if "Pendulum" in env_id else env_id,
                                              np.random.default_rng(0), 2), env)
    env.step(actions)
    env.close()
    assert env.closed
    with pytest.raises(ClosedEnvironmentError, match="closed"):
        env.step(actions)
    with pytest.raises(ClosedEnvironmentError, match="closed"):
        env.reset(seed=0)
    env.close()  # closing twice is allowed, as in gymnasium


def test_closing_the_numpy_view_closes_the_env():
    env = fenvs.make("CartPole-v1", 2, seed=0)
    view = fenvs.TorchToNumpy(env)
    view.reset()
    view.close()
    assert env.closed
    with pytest.raises(ClosedEnvironmentError):
        view.step(np.zeros(2, dtype=np.int64))


def stepped(env_id, mode="next_step", seed=0, steps=25):
    """An env after ``steps`` random steps (episodes end and autoreset on the way)."""
    env = fenvs.make(env_id, N, dtype=torch.float64, seed=seed, autoreset_mode=mode, max_episode_steps=20)
    env.reset()
    rng = np.random.default_rng(1)
    for _ in range(steps):
        out = env.step(to_torch_actions(sample_actions(env_id, rng, N), env))
    return env, out


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "Pendulum-v1"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_reset_mask_resets_exactly_the_masked_envs(env_id, as_tensor, backend):
    env, (obs, *_) = stepped(env_id)
    twin, _ = stepped(env_id)  # the same run, then a full reset: what the masked envs must get
    before = env.state_dict()
    mask = torch.from_numpy(MASK) if as_tensor else MASK
    new_obs, info = env.reset(options={"reset_mask": mask})
    full_obs, _ = twin.reset()
    after, full = env.state_dict(), twin.state_dict()
    m, keep = torch.from_numpy(MASK), torch.from_numpy(~MASK)
    assert info == {}
    assert torch.equal(new_obs[m], full_obs[m]) and torch.equal(new_obs[keep], obs[keep])
    assert torch.equal(after["state"][:, m], full["state"][:, m])
    assert torch.equal(after["state"][:, keep], before["state"][:, keep])
    for k in ("elapsed", "episode_return", "autoreset", "resets"):
        assert torch.equal(after[k][m], full[k][m]), k
        assert torch.equal(after[k][keep], before[k][keep]), k
    assert (after["elapsed"][m] == 0).all() and (after["elapsed"][keep] > 0).all()
    # Every env steps on from there as the twin's masked envs do, the others as before.
    a = torch.zeros((N,), dtype=torch.int64) if env_id != "Pendulum-v1" else torch.zeros((N, 1), dtype=torch.float64)
    o1, *_ = env.step(a)
    o2, *_ = twin.step(a)
    assert torch.equal(o1[m], o2[m])


def test_reset_mask_with_seeds_seeds_only_the_masked_envs(backend):
    env, (obs, *_) = stepped("CartPole-v1")
    fresh = fenvs.make("CartPole-v1", N, dtype=torch.float64)
    fresh_obs, _ = fresh.reset(seed=7)
    seeds_before = env.state_dict()["seeds"]
    new_obs, _ = env.reset(seed=7, options={"reset_mask": MASK})
    m, keep = torch.from_numpy(MASK), torch.from_numpy(~MASK)
    assert torch.equal(new_obs[m], fresh_obs[m]) and torch.equal(new_obs[keep], obs[keep])
    assert torch.equal(env.state_dict()["seeds"][keep], seeds_before[keep])
    per_env = list(range(100, 100 + N))
    fresh_obs, _ = fresh.reset(seed=per_env)
    new_obs, _ = env.reset(seed=per_env, options={"reset_mask": MASK})
    assert torch.equal(new_obs[m], fresh_obs[m])


def test_reset_mask_keeps_a_pending_autoreset(backend):
    """NEXT_STEP: an unmasked env whose episode just ended still resets on the next step."""
    env = fenvs.make("CartPole-v1", 2, seed=0, max_episode_steps=3)
    env.reset()
    for _ in range(3):
        *_, trunc, _ = env.step(torch.zeros(2, dtype=torch.int64))
    assert trunc.all()
    env.reset(options={"reset_mask": np.array([True, False])})
    _, reward, *_ = env.step(torch.zeros(2, dtype=torch.int64))
    assert reward.tolist() == [1.0, 0.0]  # env 1's step is its autoreset: no reward
    assert env.episode_lengths.tolist() == [1, 0]


def test_reset_mask_after_set_state_observes_the_set_states(backend):
    env = fenvs.make("Acrobot-v1", 2, dtype=torch.float64, seed=0)
    env.reset()
    state = torch.tensor([[0.3, -0.2, 0.1, 0.5], [1.0, 2.0, -1.0, 0.25]], dtype=torch.float64)
    env.set_state(state)
    obs, _ = env.reset(options={"reset_mask": np.array([True, False])})
    s = state[1].tolist()  # gymnasium's Acrobot observes [cos t1, sin t1, cos t2, sin t2, dt1, dt2]
    expected = torch.tensor([math.cos(s[0]), math.sin(s[0]), math.cos(s[1]), math.sin(s[1]), s[2], s[3]],
                            dtype=torch.float64)
    torch.testing.assert_close(obs[1], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"reset_mask": np.zeros(N, dtype=bool)}, ValueError, "at least one True"),
        ({"reset_mask": np.ones(N - 1, dtype=bool)}, ValueError, r"shape \(6,\)"),
        ({"reset_mask": np.ones(N, dtype=np.int64)}, TypeError, "bools"),
        ({"reset_mask": [True] * N}, TypeError, "numpy array or a torch.Tensor"),
        ({"other": 1}, ValueError, "only the reset option 'reset_mask'"),
        ("reset_mask", TypeError, "options must be a dict"),
    ],
)
@pytest.mark.parametrize("env_id", ["CartPole-v1", FALLBACK_PENDULUM])
def test_bad_reset_options(env_id, options, error, match):
    env = fenvs.make(env_id, N, seed=0)
    env.reset()
    if env_id == FALLBACK_PENDULUM and options == {"other": 1}:
        pytest.skip("gymnasium's envs take their own options")
    with pytest.raises(error, match=match):
        env.reset(options=options)


def test_reset_mask_needs_a_full_reset_first(backend):
    env = fenvs.make("CartPole-v1", N, seed=0)
    with pytest.raises(ResetNeeded, match="full env.reset"):
        env.reset(options={"reset_mask": MASK})


def test_gymnasium_backed_reset_mask_matches_sync_vector_env():
    """Other ids: the mask reaches gymnasium's SyncVectorEnv, and the episode statistics of the
    other envs carry on (gymnasium's RecordEpisodeStatistics alone would restart them all)."""
    env = fenvs.make(FALLBACK_PENDULUM, N, dtype=torch.float64, max_episode_steps=50)
    genv = SyncVectorEnv([lambda: gymnasium.make("Pendulum-v1", max_episode_steps=50)] * N)
    obs, _ = env.reset(seed=3)
    g_obs, _ = genv.reset(seed=3)
    np.testing.assert_array_equal(obs.numpy(), g_obs)
    a = np.full((N, 1), 0.5, dtype=np.float32)
    total = np.zeros(N)
    for t in range(50):
        if t == 20:
            obs, _ = env.reset(seed=11, options={"reset_mask": torch.from_numpy(MASK)})
            g_obs, _ = genv.reset(seed=11, options={"reset_mask": MASK.copy()})
            np.testing.assert_array_equal(obs.numpy(), g_obs)
            total[MASK] = 0
        obs, reward, _, trunc, info = env.step(torch.from_numpy(a))
        g_obs, g_reward, *_ = genv.step(a)
        np.testing.assert_array_equal(obs.numpy(), g_obs)
        total += g_reward
    # The unmasked envs' episodes end at step 50 with 50 steps, the masked ones' (reset at step
    # 20) have 30 steps to go.
    assert np.array_equal(info["_episode"].numpy(), ~MASK) and np.array_equal(trunc.numpy(), ~MASK)
    np.testing.assert_allclose(info["episode"]["r"].numpy()[~MASK], total[~MASK])
    assert (info["episode"]["l"].numpy()[~MASK] == 50).all()
