"""The trainers' building blocks: schedules, replay windows, n-step targets, target updates,
the rollout's bootstrap on truncation, config checks."""

import copy
import dataclasses

import pytest
import torch

import fastrl.optim
from fastrl.algos import A2C, DQN, PPO, A2CConfig, DQNConfig, PPOConfig, Reinforce, ReinforceConfig
from fastrl.algos.common import field_docs
from fastrl.algos.dqn import ReplayBuffer, linear_schedule, n_step_targets


def test_linear_schedule():
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 100, 10_000) == pytest.approx(0.1)


@pytest.mark.parametrize("total_steps", [1_000, 4_000])
def test_dqn_epsilon_decays_over_exploration_steps_whatever_the_budget(total_steps):
    """exploration_steps fixes the decay in frames (the MinAtar paper's 100k, however long the run);
    without it the decay is exploration_fraction of total_steps."""
    t = DQN(DQNConfig(env_id="CartPole-v1", num_envs=2, total_steps=total_steps, start_epsilon=1.0,
                      end_epsilon=0.1, exploration_fraction=0.5, exploration_steps=200))
    for step, eps in [(0, 1.0), (100, 0.55), (200, 0.1), (900, 0.1)]:
        t.global_step = step
        assert t.epsilon() == pytest.approx(eps)
    t.config = dataclasses.replace(t.config, exploration_steps=None)  # the fraction: half the budget
    t.global_step = total_steps // 4
    assert t.epsilon() == pytest.approx(0.55)


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
    b = t.collect_rollout()
    assert b["done"].sum() == 4 and not b["terminated"].any()
    nv = t.bootstrapped_next_values(b)
    t_end = b["done"].float().argmax(0)  # the truncated step of each env
    with torch.no_grad():
        final_v = t.agent.value(b["final_obs"][t_end, torch.arange(4)])
        reset_v = t.agent.value(b["obs"][t_end + 1, torch.arange(4)])
    torch.testing.assert_close(nv[t_end, torch.arange(4)], final_v)
    assert not torch.allclose(final_v, reset_v)  # the reset observation would be wrong
    torch.testing.assert_close(nv[:-1][~b["done"][:-1]], b["values"][1:][~b["done"][:-1]])


def test_next_values_of_a_rollout_without_truncations_skip_the_final_observations():
    """MinAtar's episodes have no time limit: the critic is not run over the final observations of
    a rollout where nothing was truncated (on the CPU), and the next values are V(s_{t+1}) within
    episodes, the last value at the end, and 0 where an episode terminated (nothing bootstraps)."""
    t = PPO(PPOConfig(env_id="MinAtar/Breakout-v1", num_envs=4, num_steps=32, total_steps=128, hidden=(8,)))
    b = t.collect_rollout()
    assert b["terminated"].any() and torch.equal(b["terminated"], b["done"])
    calls = []
    t.agent.critic.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    nv = t.bootstrapped_next_values(b)
    assert calls == []
    expected = torch.cat([b["values"][1:], b["last_value"][None]])  # by hand: the next step's value
    expected[b["done"]] = 0.0
    assert torch.equal(nv, expected)


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


def test_replay_windows_of_a_buffer_not_yet_full():
    buf = ReplayBuffer(capacity=10, num_envs=1, obs_shape=(1,), device="cpu")
    for t in range(3):  # rows 0..2 written, 3..9 not
        x = torch.full((1, 1), float(t))
        buf.add(x, x, torch.zeros(1, dtype=torch.long), torch.full((1,), float(t)),
                torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool))
    rows, cols = buf.sample_windows(512, n=1, generator=torch.Generator().manual_seed(0))
    assert set(rows.flatten().tolist()) == {0, 1, 2} and set(cols.tolist()) == {0}


def test_ppo_anneals_the_learning_rate_linearly_to_zero():
    cfg = PPOConfig(num_envs=2, num_steps=8, num_minibatches=2, total_steps=64, hidden=(8,), learning_rate=0.01)
    t = PPO(cfg)
    t.train()
    # 4 iterations; iteration i trains with 0.01 * (1 - i / 4)
    assert [row["learning_rate"] for row in t.history] == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    t = PPO(dataclasses.replace(cfg, anneal_lr=False))
    t.train()
    assert [row["learning_rate"] for row in t.history] == pytest.approx([0.01] * 4)


def test_rollout_updates_the_observation_normalizer():
    t = PPO(PPOConfig(num_envs=4, num_steps=8, num_minibatches=2, total_steps=64, normalize_obs=True))
    t.collect_rollout()
    assert t.obs_norm.stats.count.item() == pytest.approx(1e-4 + 4 * 8)


class StepSpy:
    """Wraps ``env.step``: records what it returned (and changes it as ``edit`` says)."""

    def __init__(self, env, edit=None):
        self.real, self.edit, self.calls = env.step, edit, []
        env.step = self

    def __call__(self, actions):
        out = self.real(actions)
        if self.edit is not None:
            out = self.edit(len(self.calls), *out)
        obs, reward, term, trunc, info = out  # copies: an env may write its next step into the same tensors
        self.calls.append((actions.clone(), obs.clone(), reward.clone(), term.clone(), trunc.clone(),
                           {"final_obs": info["final_obs"].clone()}))
        return out


def dqn_with_fixed_q(epsilon: float, num_envs: int = 64) -> DQN:
    """A DQN whose Q-network prefers action 0 everywhere; epsilon fixed."""
    t = DQN(DQNConfig(num_envs=num_envs, total_steps=10 * num_envs, hidden=(), start_epsilon=epsilon,
                      end_epsilon=epsilon, buffer_size=20 * num_envs))
    with torch.no_grad():
        t.q.net[0].weight.zero_()
        t.q.net[0].bias.copy_(torch.tensor([1.0, 0.0]))
    return t


def test_dqn_acts_greedily_without_exploration():
    t = dqn_with_fixed_q(epsilon=0.0)
    spy = StepSpy(t.env)
    t._collect()
    assert torch.equal(spy.calls[0][0], torch.zeros(64, dtype=torch.long))
    assert torch.equal(t.buffer.actions[0], spy.calls[0][0])


def test_dqn_explores_with_every_action():
    t = dqn_with_fixed_q(epsilon=1.0)
    spy = StepSpy(t.env)
    for _ in range(3):
        t._collect()
    actions = torch.cat([c[0] for c in spy.calls])
    assert set(actions.tolist()) == {0, 1}  # uniform over both actions: 192 draws are never all one


def test_dqn_stores_what_the_env_returned():
    """done = terminated | truncated per env; the next observation, or the final one where an
    episode ended (``final_obs`` elsewhere is garbage, as gymnasium's own envs leave it)."""
    def edit(step, obs, reward, term, trunc, info):
        trunc = trunc.clone()
        if step == 1:
            trunc[:2] = True  # env 0 and 1 truncated at step 1
        final = torch.where((term | trunc)[:, None], info["final_obs"], torch.full_like(obs, 99.0))
        return obs, reward, term, trunc, {**info, "final_obs": final}

    t = dqn_with_fixed_q(epsilon=0.0, num_envs=4)
    spy = StepSpy(t.env, edit)
    for _ in range(12):  # always pushing left: CartPole terminates within about 10 steps
        t._collect()
    for step, (actions, obs, reward, term, trunc, info) in enumerate(spy.calls):
        done = term | trunc
        assert torch.equal(t.buffer.done[step], done) and torch.equal(t.buffer.terminated[step], term)
        assert torch.equal(t.buffer.actions[step], actions)
        torch.testing.assert_close(t.buffer.rewards[step], reward.float())
        expected = torch.where(done[:, None], info["final_obs"], obs)
        torch.testing.assert_close(t.buffer.next_obs[step], expected.float())
    assert t.buffer.done[1, :2].all() and not t.buffer.terminated[1, :2].any()
    assert t.buffer.terminated.any() and not t.buffer.done.all()


@pytest.mark.parametrize("learning_starts,n_step,first_update", [(8, 1, 4), (0, 3, 3), (6, 2, 3)])
def test_dqn_first_update_is_at_learning_starts_and_n_step(learning_starts, n_step, first_update):
    """Training starts at the first iteration whose global step reaches learning_starts and whose
    buffer holds n_step steps (2 envs: global step = 2 * iteration)."""
    t = DQN(DQNConfig(num_envs=2, total_steps=64, learning_starts=learning_starts, n_step=n_step, batch_size=4,
                      buffer_size=64, hidden=(8,)))
    trained = [("td_loss" in t.train_iteration()) for _ in range(6)]
    assert trained == [i + 1 >= first_update for i in range(6)]


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_dqn_first_gradient_step_by_hand(optimizer):
    """The first update of each parameter from its (clipped) gradient g: centred RMSProp as the
    MinAtar paper's code has it (squared-gradient momentum 0.95, eps 0.01 outside the root), and
    Adam (its first step is lr * g / (|g| + eps): about lr * sign(g))."""
    lr = 1e-3
    t = DQN(DQNConfig(env_id="CartPole-v1", num_envs=2, total_steps=64, batch_size=8, buffer_size=64,
                      learning_rate=lr, optimizer=optimizer, hidden=(8,)))
    assert isinstance(t.optimizer, fastrl.optim.RMSprop if optimizer == "rmsprop" else torch.optim.Adam)
    for _ in range(6):
        t._collect()
    before = [p.detach().clone() for p in t.q.parameters()]
    t.learn_on(*t.sample_windows())
    for p, p0 in zip(t.q.parameters(), before):
        g = p.grad
        if optimizer == "rmsprop":
            square, mean = 0.05 * g * g, 0.05 * g  # the running averages after one step from 0
            expected = p0 - lr * g / ((square - mean * mean).sqrt() + 0.01)
        else:
            expected = p0 - lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
