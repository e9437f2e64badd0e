"""The trainers' building blocks: schedules, replay windows, n-step targets, target updates,
the rollout's bootstrap on truncation, config checks."""

import copy
import dataclasses

import pytest
import torch

from fastrl.algos import A2C, DQN, PPO, A2CConfig, DQNConfig, PPOConfig, Reinforce, ReinforceConfig
from fastrl.algos.common import field_docs
from fastrl.algos.dqn import ReplayBuffer, linear_schedule, n_step_targets
from fastrl.algos.onpolicy import bootstrapped_next_values, collect_rollout


def test_linear_schedule():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 100, 10_000) == pytest.approx(0.1)


def test_n_step_targets_by_hand():
    g = 0.5
    # Columns: (a) no end, (b) terminated at step 1, (c) truncated at step 0, (d) truncated at the last step.
    r = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [4.0, 4.0, 4.0, 4.0]])
    term = torch.tensor([[False] * 4, [False, True, False, False], [False] * 4])
    done = term.clone()
    done[0, 2] = True
    done[2, 3] = True
    next_q = torch.tensor([[10.0, 10.0, 7.0, 10.0], [20.0, 20.0, 20.0, 20.0], [8.0, 8.0, 8.0, 3.0]])
    expected = torch.tensor([
        1 + g * 2 + g**2 * 4 + g**3 * 8,   # (a) bootstrap from the last next_q
        1 + g * 2,                         # (b) terminated: no bootstrap, nothing after
        1 + g * 7,                         # (c) truncated at 0: bootstrap from its own final obs
        1 + g * 2 + g**2 * (4 + g * 3),    # (d) truncated at the window's end: its final obs value
    ])
    torch.testing.assert_close(n_step_targets(r, term, done, next_q, g), expected)


def test_replay_windows_stay_in_written_order():
    buf = ReplayBuffer(capacity=10 * 2, num_envs=2, obs_shape=(1,), device="cpu")
    for t in range(13):  # wraps: the ring holds steps 3..12
        x = torch.full((2, 1), float(t))
        buf.add(x, x, torch.zeros(2, dtype=torch.long), torch.full((2,), float(t)),
                torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
    rows, cols = buf.sample_windows(4096, n=3, generator=torch.Generator().manual_seed(0))
    steps = buf.rewards[rows, cols]  # [3, B] step numbers
    assert torch.equal(steps[1] - steps[0], torch.ones(4096)) and torch.equal(steps[2] - steps[1], torch.ones(4096))
    assert steps.min() == 3 and steps.max() == 12
    assert set(steps[0].tolist()) == set(range(3, 11))  # every valid start is drawn


def test_dqn_target_updates_hard_and_polyak():
    for tau in (1.0, 0.25):
        t = DQN(DQNConfig(total_steps=64, tau=tau, target_update_every=1, learning_starts=0, batch_size=8))
        for _ in range(3):
            t._collect()  # enough steps for n-step windows
        before = [p.clone() for p in t.q_target.parameters()]
        with torch.no_grad():
            for p in t.q.parameters():
                p.add_(1.0)
        t.train_iteration()  # one gradient step, then the target update (iteration 0)
        for b, p, tp in zip(before, t.q.parameters(), t.q_target.parameters()):
            torch.testing.assert_close(tp, b + tau * (p - b) if tau < 1 else p, rtol=0, atol=1e-6)


def test_rollout_bootstraps_truncation_from_final_observation():
    # Pendulum only truncates (200 steps): with 4 envs and 210 steps every env truncates once.
    t = PPO(PPOConfig(env_id="Pendulum-v1", num_envs=4, num_steps=210, total_steps=840, num_minibatches=4))
    b = collect_rollout(t, t.agent, 210)
    assert b["done"].sum() == 4 and not b["terminated"].any()
    nv = bootstrapped_next_values(t.agent, b)
    t_end = b["done"].float().argmax(0)  # the truncated step of each env
    with torch.no_grad():
        final_v = t.agent.value(b["final_obs"][t_end, torch.arange(4)])
        reset_v = t.agent.value(b["obs"][t_end + 1, torch.arange(4)])
    torch.testing.assert_close(nv[t_end, torch.arange(4)], final_v)
    assert not torch.allclose(final_v, reset_v)  # the reset observation would be wrong
    torch.testing.assert_close(nv[:-1][~b["done"][:-1]], b["values"][1:][~b["done"][:-1]])


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (PPO, dict(env_id="NoSuchEnv-v0"), "NoSuchEnv"),
        (PPO, dict(total_steps=-5), "total_steps must be > 0"),
        (PPO, dict(num_envs=0), "num_envs must be > 0"),
        (PPO, dict(num_envs=3, num_steps=5, num_minibatches=4), "divisible by num_minibatches"),
        (PPO, dict(gamma=1.5), r"gamma must be in \[0, 1\]"),
        (DQN, dict(env_id="Pendulum-v1"), "DQN needs a discrete action space"),
        (DQN, dict(loss="l1"), "loss must be one of 'huber', 'mse'"),
        (A2C, dict(learning_rate=0.0), "learning_rate must be > 0"),
        (Reinforce, dict(device="tpu"), "device must be cpu or cuda"),
    ],
)
def test_bad_config_fails_at_start_up(cls, kwargs, match):
    with pytest.raises((ValueError, gymnasium_error()), match=match):
        cls(cls.Config(**kwargs))


def gymnasium_error():
    import gymnasium

    return gymnasium.error.Error


def test_every_config_field_is_documented():
    for cfg in (PPOConfig, DQNConfig, A2CConfig, ReinforceConfig):
        docs = field_docs(cfg)
        missing = [f.name for f in dataclasses.fields(cfg) if not docs.get(f.name)]
        assert not missing, f"{cfg.__name__} fields without a docstring: {missing}"


def test_trainer_rejects_wrong_config_type():
    with pytest.raises(TypeError, match="PPO needs a PPOConfig"):
        PPO(copy.copy(DQNConfig()))
