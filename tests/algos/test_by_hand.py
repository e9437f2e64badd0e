"""The trainers' arithmetic against examples worked out by hand: A2C's and PPO's losses and
gradients (with and without advantage normalization), REINFORCE's returns (termination,
truncation, unfinished episodes) and update, Gaussian log-probs, DQN's Double-DQN target, its
huber / mse losses and its exploration schedule, and the running normalizers. Networks are single linear layers
(``hidden=()``) with weights set so every number can be followed on paper."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fastrl.algos import A2C, DQN, PPO, A2CConfig, DQNConfig, PPOConfig, Reinforce, ReinforceConfig
from fastrl.algos.dqn import linear_schedule
from fastrl.nn import ActorCritic
from fastrl.nn.normalize import ObsNormalizer, RewardScaler, RunningMeanStd

P = (0.25, 0.75)  # the policy below: logits (0, ln 3) whatever the observation


def set_linear(layer: torch.nn.Linear, weight_row0: float, bias) -> None:
    """Weights zero except ``weight[:, 0]``; so the output is ``weight_row0 * obs[0] + bias``."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:, 0] = weight_row0
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def fixed_agent(trainer) -> None:
    """Actor: logits (0, ln 3), so pi = (1/4, 3/4). Critic: V(s) = s[0]."""
    set_linear(trainer.agent.actor[0], 0.0, [0.0, math.log(3.0)])
    set_linear(trainer.agent.critic[0], 1.0, [0.0])


def observations(first: list) -> torch.Tensor:
    """CartPole-shaped observations ``[..., 4]`` whose first component (the critic's value) is ``first``."""
    x = torch.tensor(first, dtype=torch.float32)
    return torch.stack([x, torch.full_like(x, 0.3), torch.full_like(x, -0.2), torch.full_like(x, 0.1)], -1)


def grads_at_step(trainer) -> dict[str, torch.Tensor]:
    """Records the gradients the optimizer steps with."""
    seen = {}
    step = trainer.optimizer.step

    def record(*args, **kwargs):
        seen.update({n: p.grad.clone() for n, p in trainer.agent.named_parameters()})
        return step(*args, **kwargs)

    trainer.optimizer.step = record
    return seen


# -------------------------------------------------------------------------- A2C


def a2c_batch() -> dict[str, torch.Tensor]:
    """Two steps of two envs (time-major ``[T=2, N=2]``), gamma 0.5.

    env 0: s=0.5, r=1; then s=1, r=2, terminated (its final obs has V=100: must not be used).
    env 1: s=2, r=1, truncated (final obs V=10); then the reset s=0, r=3; the obs after it has V=4.
    """
    obs = observations([[0.5, 2.0], [1.0, 0.0]])
    return {
        "obs": obs,
        "actions": torch.tensor([[0, 1], [1, 0]]),
        "logprobs": torch.zeros(2, 2),  # A2C recomputes them
        "values": obs[..., 0].clone(),
        "rewards": torch.tensor([[1.0, 1.0], [2.0, 3.0]]),
        "terminated": torch.tensor([[False, False], [True, False]]),
        "done": torch.tensor([[False, True], [True, False]]),
        "final_obs": observations([[-1.0, 10.0], [100.0, -1.0]]),  # meaningful only where done
        "last_value": torch.tensor([7.0, 4.0]),  # env 0's is of a new episode: unused
    }


def test_a2c_losses_and_gradients_by_hand(monkeypatch):
    cfg = A2CConfig(num_envs=2, num_steps=2, total_steps=4, hidden=(), gamma=0.5, gae_lambda=1.0, vf_coef=0.5,
                    entropy_coef=0.1, max_grad_norm=1e9)
    t = A2C(cfg)
    fixed_agent(t)
    monkeypatch.setattr(t, "collect_rollout", lambda *args, **kw: a2c_batch())
    grads = grads_at_step(t)
    m = t.train_iteration()
    # n-step returns (lambda 1), gamma 0.5:
    #   env 0: R1 = 2 (terminated: no bootstrap), R0 = 1 + 0.5 * 2 = 2
    #   env 1: R1 = 3 + 0.5 * 4 = 5, R0 = 1 + 0.5 * 10 = 6 (truncated: V(final obs), not R1)
    # Flattened [t0e0, t0e1, t1e0, t1e1]: V = [0.5, 2, 1, 0], R = [2, 6, 2, 5], A = R - V = [1.5, 4, 1, 5],
    # actions [0, 1, 1, 0] with pi = (1/4, 3/4).
    A, actions = [1.5, 4, 1, 5], [0, 1, 1, 0]
    # policy loss = -mean(A log pi(a)) = -(6.5 ln 1/4 + 5 ln 3/4) / 4
    assert m["policy_loss"].item() == pytest.approx(-(6.5 * math.log(0.25) + 5 * math.log(0.75)) / 4, rel=1e-6)
    # value loss = mean(0.5 (V - R)^2) = 0.5 * (2.25 + 16 + 1 + 25) / 4 = 5.53125
    assert m["value_loss"].item() == pytest.approx(5.53125, rel=1e-6)
    H = -(P[0] * math.log(P[0]) + P[1] * math.log(P[1]))  # 0.5623
    assert m["entropy"].item() == pytest.approx(H, rel=1e-6)
    # Critic V = s0 * w + b, loss 0.5 * value loss: d/db = 0.5 * sum(V - R) / 4 = 0.5 * -11.5 / 4 = -1.4375,
    # d/dw = 0.5 * sum((V - R) s0) / 4 = 0.5 * (-0.75 - 8 - 1 - 0) / 4 = -1.21875
    assert grads["critic.0.bias"].item() == pytest.approx(-1.4375, rel=1e-6)
    assert grads["critic.0.weight"][0, 0].item() == pytest.approx(-1.21875, rel=1e-6)
    # Actor logits z: d log pi(a)/dz = onehot(a) - pi; sum A (onehot(a) - pi) over the samples, for z0:
    #   1.5 * 3/4 + 4 * -1/4 + 1 * -1/4 + 5 * 3/4 = 3.625 (and -3.625 for z1): policy part -3.625 / 4.
    # Entropy bonus -0.1 H: dH/dz_i = -pi_i (ln pi_i + H).
    policy = sum(a * ((i == 0) - P[0]) for a, i in zip(A, actions))
    assert policy == pytest.approx(3.625)
    dH = [-p * (math.log(p) + H) for p in P]
    expected = [-policy / 4 - 0.1 * dH[0], policy / 4 - 0.1 * dH[1]]  # [-0.92685, 0.92685]
    torch.testing.assert_close(grads["actor.0.bias"], torch.tensor(expected), rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------- REINFORCE


def reinforce_batch() -> dict[str, torch.Tensor]:
    """Three steps ``[T=3, N=3]``, rewards 1, 2, 3 in every column, gamma 0.5:
    (a) truncated at t=1 (final obs V=10), (b) terminated at t=1 (final obs V=100: unused),
    (c) no end. The observation after the last step has V=4 in every column."""
    obs = observations([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    done = torch.tensor([[False] * 3, [True, True, False], [False] * 3])
    return {
        "obs": obs,
        "actions": torch.tensor([[0, 1, 1], [1, 1, 0], [0, 0, 1]]),
        "logprobs": torch.zeros(3, 3),
        "values": obs[..., 0].clone(),
        "rewards": torch.tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3]),
        "terminated": torch.tensor([[False] * 3, [False, True, False], [False] * 3]),
        "done": done,
        "final_obs": observations([[-1.0] * 3, [10.0, 100.0, -1.0], [-1.0] * 3]),
        "last_value": torch.tensor([4.0, 4.0, 4.0]),
    }


def test_reinforce_returns_with_a_baseline_by_hand():
    t = Reinforce(ReinforceConfig(num_envs=3, num_steps=3, total_steps=9, hidden=(), gamma=0.5, baseline=True))
    fixed_agent(t)
    returns, valid = t._returns(reinforce_batch())
    # (a) G2 = 3 + 0.5 * 4 = 5; G1 = 2 + 0.5 * 10 = 7 (truncated: bootstrap from the final obs); G0 = 1 + 3.5
    # (b) G2 = 5; G1 = 2 (terminated: nothing after); G0 = 1 + 0.5 * 2 = 2
    # (c) G2 = 5; G1 = 2 + 2.5 = 4.5; G0 = 1 + 2.25 = 3.25
    expected = torch.tensor([[4.5, 2.0, 3.25], [7.0, 2.0, 4.5], [5.0, 5.0, 5.0]])
    torch.testing.assert_close(returns, expected)
    assert valid.all()


def test_reinforce_monte_carlo_returns_by_hand(monkeypatch):
    cfg = ReinforceConfig(num_envs=3, num_steps=3, total_steps=9, hidden=(), gamma=0.5, baseline=False,
                          normalize_advantages=False)
    t = Reinforce(cfg)
    fixed_agent(t)
    returns, valid = t._returns(reinforce_batch())
    # Without a baseline nothing bootstraps; a step counts once its episode has ended in the rollout.
    # (a), (b): G1 = 2, G0 = 1 + 0.5 * 2 = 2 (valid); G2 = 3 (its episode has not ended: invalid)
    # (c): G2 = 3, G1 = 3.5, G0 = 2.75, all invalid
    valid_expected = torch.tensor([[True, True, False], [True, True, False], [False, False, False]])
    assert torch.equal(valid, valid_expected)
    torch.testing.assert_close(returns[valid], torch.tensor([2.0, 2.0, 2.0, 2.0]))
    torch.testing.assert_close(returns[~valid], torch.tensor([2.75, 3.5, 3.0, 3.0, 3.0]))
    # The losses average over the 4 valid steps only: actions there (a, b) are [0, 1], [1, 1] -> pi = 1/4, 3/4,
    # 3/4, 3/4; policy loss = -mean(G log pi) = -2 (ln 1/4 + 3 ln 3/4) / 4.
    # V (= s0) there is [0, 0, 1, 1]: value loss = mean(0.5 (V - G)^2) = 0.5 * (4 + 4 + 1 + 1) / 4 = 1.25
    monkeypatch.setattr(t, "collect_rollout", lambda *args, **kw: reinforce_batch())
    m = t.train_iteration()
    assert m["policy_loss"].item() == pytest.approx(-2 * (math.log(0.25) + 3 * math.log(0.75)) / 4, rel=1e-6)
    assert m["value_loss"].item() == pytest.approx(1.25, rel=1e-6)
    assert m["valid_fraction"].item() == pytest.approx(4 / 9)


# -------------------------------------------------------------------------- DQN


@pytest.mark.parametrize("double_dqn", [True, False], ids=["double", "single"])
@pytest.mark.parametrize("loss", ["huber", "mse"])
@pytest.mark.parametrize("case", ["large-error", "small-error", "terminated"])
def test_dqn_target_and_loss_by_hand(double_dqn, loss, case):
    # Online Q(s) = (0, 1) and target Q(s) = (5, 2) for every s: the online net picks action 1 for the
    # next state, the target net's own max is action 0. gamma 0.5, 1-step targets.
    #   large-error: r = 1, a = 0 (Q = 0). Double: y = 1 + 0.5 * 2 = 2; single: y = 1 + 0.5 * 5 = 3.5.
    #   small-error: r = -0.5, a = 1 (Q = 1). Double: y = -0.5 + 1 = 0.5; single: y = -0.5 + 2.5 = 2.
    #   terminated:  r = 1, a = 0, no bootstrap: y = 1 either way.
    # Errors Q - y: large -2 / -3.5, small 0.5 / -1, terminated -1. huber(d) = d^2/2 if |d| < 1 else |d| - 1/2.
    reward, action, terminated, q = {"large-error": (1.0, 0, False, 0.0), "small-error": (-0.5, 1, False, 1.0),
                                     "terminated": (1.0, 0, True, 0.0)}[case]
    y = {("large-error", True): 2.0, ("large-error", False): 3.5, ("small-error", True): 0.5,
         ("small-error", False): 2.0}.get((case, double_dqn), 1.0)
    d = q - y
    expected = (d * d / 2 if abs(d) < 1 else abs(d) - 0.5) if loss == "huber" else d * d
    cfg = DQNConfig(num_envs=1, n_step=1, buffer_size=2, batch_size=4, hidden=(), gamma=0.5, double_dqn=double_dqn,
                    loss=loss, max_grad_norm=1e9)
    t = DQN(cfg)
    set_linear(t.q.net[0], 0.0, [0.0, 1.0])
    set_linear(t.q_target.net[0], 0.0, [5.0, 2.0])
    for _ in range(2):  # both rows of the buffer hold the same transition: any sample is it
        t.buffer.add(observations([0.2]), observations([0.4]), torch.tensor([action]), torch.tensor([reward]),
                     torch.tensor([terminated]), torch.tensor([terminated]))
    m = t._learn()
    assert m["q_values"].item() == pytest.approx(q)
    assert m["td_loss"].item() == pytest.approx(expected, rel=1e-6)


# -------------------------------------------------------------------------- normalizers


def test_running_mean_std_by_hand():
    # A prior of count 1 with mean 0 and variance 1 weighs like two half-samples at -1 and +1.
    # Batches [2, 4] then [6]: everything together is {-1: 1/2, +1: 1/2, 2, 4, 6}, count 4,
    # mean (0 + 12) / 4 = 3, variance (0.5 * 16 + 0.5 * 4 + 1 + 1 + 9) / 4 = 21 / 4.
    rms = RunningMeanStd((), epsilon=1.0)
    rms.update(torch.tensor([2.0, 4.0]))
    rms.update(torch.tensor([6.0]))
    assert (rms.mean.item(), rms.var.item(), rms.count.item()) == pytest.approx((3.0, 5.25, 4.0), rel=1e-12)


@given(batches=st.lists(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=6), min_size=1, max_size=5))
def test_running_mean_std_equals_the_weighted_statistics_of_everything_seen(batches):
    rms = RunningMeanStd((), epsilon=1e-4)
    for b in batches:
        rms.update(torch.tensor(b, dtype=torch.float64))
    # the prior as two pseudo-samples -1, +1 of weight 0.5e-4 each (mean 0, variance 1, count 1e-4)
    x = np.array([-1.0, 1.0] + [v for b in batches for v in b])
    w = np.array([0.5e-4, 0.5e-4] + [1.0] * (len(x) - 2))
    mean = np.average(x, weights=w)
    var = np.average((x - mean) ** 2, weights=w)
    assert rms.count.item() == pytest.approx(w.sum(), rel=1e-12)
    scale = max(1.0, float(np.abs(x).max()) ** 2)  # rounding in either formula grows with x^2
    assert rms.mean.item() == pytest.approx(mean, rel=1e-9, abs=1e-9)
    assert rms.var.item() == pytest.approx(var, rel=1e-9, abs=1e-12 * scale)


def test_obs_normalizer_by_hand():
    norm = ObsNormalizer(2, clip=10.0)
    norm.stats.mean.copy_(torch.tensor([1.0, -2.0]))
    norm.stats.var.copy_(torch.tensor([4.0, 0.25]))  # std 2 and 0.5
    obs = torch.tensor([[3.0, -1.5], [1.0, 100.0], [-100.0, -2.0]])
    # (3 - 1) / 2 = 1, (-1.5 + 2) / 0.5 = 1; 102 / 0.5 = 204 clipped to 10; -101 / 2 clipped to -10
    expected = torch.tensor([[1.0, 1.0], [0.0, 10.0], [-10.0, 0.0]])
    torch.testing.assert_close(norm(obs), expected)
    assert norm.stats.count.item() == pytest.approx(1e-4)  # update=False leaves the statistics
    # update=True takes the batch in first: [[1, 2], [3, 6]] has mean (2, 4) and variance (1, 4) (the
    # prior's weight 1e-4 moves them by ~1e-4), so it comes out as [[-1, -1], [1, 1]].
    fresh = ObsNormalizer(2)
    out = fresh(torch.tensor([[1.0, 2.0], [3.0, 6.0]]), update=True)
    torch.testing.assert_close(out, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), rtol=0, atol=1e-3)
    assert fresh.stats.count.item() == pytest.approx(2.0001)


def test_reward_scaler_by_hand():
    # gamma 0.5, two envs. Step 0: rewards (1, 2), env 1's episode ends. Step 1: rewards (1, 4).
    # Discounted returns: step 0 (1, 2); env 1 restarts, so step 1 (0.5 * 1 + 1, 0 + 4) = (1.5, 4).
    # Rewards are divided by the std of all returns so far (the prior's weight 1e-4 aside):
    #   step 0: {1, 2}: variance 0.25 -> (1, 2) / 0.5 = (2, 4)
    #   step 1: {1, 2, 1.5, 4}: mean 2.125, variance (1.265625 + 0.015625 + 0.390625 + 3.515625) / 4 = 1.296875
    scaler = RewardScaler(num_envs=2, gamma=0.5)
    out0 = scaler(torch.tensor([1.0, 2.0]), torch.tensor([False, True]))
    out1 = scaler(torch.tensor([1.0, 4.0]), torch.tensor([False, False]))
    torch.testing.assert_close(out0, torch.tensor([2.0, 4.0]), rtol=1e-3, atol=0)
    torch.testing.assert_close(out1, torch.tensor([1.0, 4.0]) / math.sqrt(1.296875), rtol=1e-3, atol=0)
    torch.testing.assert_close(scaler.discounted, torch.tensor([1.5, 4.0], dtype=torch.float64))


def normalized(xs: list[float]) -> list[float]:
    """(x - mean) / std with the population std, as a scalar loop (the trainers' whitening)."""
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    return [(x - mean) / std for x in xs]


def actor_bias_grad(advantages: list[float], actions: list[int], entropy_coef: float) -> list[float]:
    """d/dz of ``-mean(A log pi(a)) - entropy_coef * H`` for the fixed policy's logits z (scalar loop)."""
    H = -sum(p * math.log(p) for p in P)
    grad = []
    for i in range(2):
        policy = sum(a * ((act == i) - P[i]) for a, act in zip(advantages, actions))
        grad.append(-policy / len(advantages) + entropy_coef * P[i] * (math.log(P[i]) + H))
    return grad


def test_a2c_normalized_advantages_by_hand(monkeypatch):
    cfg = A2CConfig(num_envs=2, num_steps=2, total_steps=4, hidden=(), gamma=0.5, gae_lambda=1.0, vf_coef=0.5,
                    entropy_coef=0.1, max_grad_norm=1e9, normalize_advantages=True)
    t = A2C(cfg)
    fixed_agent(t)
    monkeypatch.setattr(t, "collect_rollout", lambda *args, **kw: a2c_batch())
    grads = grads_at_step(t)
    m = t.train_iteration()
    # A = [1.5, 4, 1, 5] (test above): mean 2.875, population std sqrt(11.1875 / 4)
    A, actions = normalized([1.5, 4, 1, 5]), [0, 1, 1, 0]
    assert A[0] == pytest.approx(-1.375 / math.sqrt(11.1875 / 4))
    logp = [math.log(P[a]) for a in actions]
    assert m["policy_loss"].item() == pytest.approx(-sum(a * lp for a, lp in zip(A, logp)) / 4, abs=1e-6)
    torch.testing.assert_close(grads["actor.0.bias"], torch.tensor(actor_bias_grad(A, actions, 0.1)))
    assert grads["critic.0.bias"].item() == pytest.approx(-1.4375, rel=1e-6)  # the value loss is not normalized


@pytest.mark.parametrize("normalize", [True, False])
def test_ppo_update_by_hand(monkeypatch, normalize):
    """One epoch of one minibatch on A2C's batch: the ratios are 1 (old log-probs are the policy's),
    so the losses and gradients are A2C's, with PPO's per-minibatch normalization and vf_coef."""
    cfg = PPOConfig(num_envs=2, num_steps=2, total_steps=4, hidden=(), gamma=0.5, gae_lambda=1.0, vf_coef=0.25,
                    entropy_coef=0.0, max_grad_norm=1e9, num_minibatches=1, epochs=1, anneal_lr=False,
                    clip_value_loss=False, normalize_advantages=normalize)
    t = PPO(cfg)
    fixed_agent(t)
    batch = a2c_batch()
    actions = [0, 1, 1, 0]
    batch["logprobs"] = torch.tensor([math.log(P[a]) for a in actions]).reshape(2, 2)
    monkeypatch.setattr(t, "collect_rollout", lambda *args, **kw: batch)
    grads = grads_at_step(t)
    m = t.train_iteration()
    A = normalized([1.5, 4, 1, 5]) if normalize else [1.5, 4, 1, 5]
    # the surrogate at ratio 1 is -mean(A): 0 once normalized
    assert m["policy_loss"].item() == pytest.approx(-sum(A) / 4, abs=1e-6)
    torch.testing.assert_close(grads["actor.0.bias"], torch.tensor(actor_bias_grad(A, actions, 0.0)))
    # value loss 5.53125 (A2C's), weighted by vf_coef 0.25: critic gradients 0.25 * mean(V - R), 0.25 * mean((V - R) s0)
    assert m["value_loss"].item() == pytest.approx(5.53125, rel=1e-6)
    assert grads["critic.0.bias"].item() == pytest.approx(0.25 * -11.5 / 4, rel=1e-6)
    assert grads["critic.0.weight"][0, 0].item() == pytest.approx(0.25 * -9.75 / 4, rel=1e-6)
    # explained variance 1 - var(R - V) / var(R) with sample variances: R = [2, 6, 2, 5], R - V = A
    assert m["explained_variance"].item() == pytest.approx(1 - (11.1875 / 3) / (12.75 / 3), rel=1e-6)


def test_reinforce_update_with_a_baseline_by_hand(monkeypatch):
    cfg = ReinforceConfig(num_envs=3, num_steps=3, total_steps=9, hidden=(), gamma=0.5, baseline=True,
                          normalize_advantages=True, vf_coef=0.5, entropy_coef=0.1, max_grad_norm=1e9)
    t = Reinforce(cfg)
    fixed_agent(t)
    monkeypatch.setattr(t, "collect_rollout", lambda *args, **kw: reinforce_batch())
    grads = grads_at_step(t)
    m = t.train_iteration()
    # G from test_reinforce_returns_with_a_baseline_by_hand, V = s0, flattened time-major
    G = [4.5, 2.0, 3.25, 7.0, 2.0, 4.5, 5.0, 5.0, 5.0]
    V = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    actions = [0, 1, 1, 1, 1, 0, 0, 0, 1]
    A = normalized([g - v for g, v in zip(G, V)])  # G - V: mean 3.25, std 4/3
    assert A[3] == pytest.approx(2.75 * 3 / 4)
    logp = [math.log(P[a]) for a in actions]
    assert m["policy_loss"].item() == pytest.approx(-sum(a * lp for a, lp in zip(A, logp)) / 9, abs=1e-6)
    torch.testing.assert_close(grads["actor.0.bias"], torch.tensor(actor_bias_grad(A, actions, 0.1)))
    # value loss mean(0.5 (V - G)^2); its gradient enters with vf_coef 0.5
    assert m["value_loss"].item() == pytest.approx(sum(0.5 * (v - g) ** 2 for v, g in zip(V, G)) / 9, rel=1e-6)
    assert grads["critic.0.bias"].item() == pytest.approx(0.5 * -29.25 / 9, rel=1e-6)
    assert grads["critic.0.weight"][0, 0].item() == pytest.approx(0.5 * -28.5 / 9, rel=1e-6)


def test_reinforce_rollout_with_no_finished_episode_changes_nothing(monkeypatch):
    """Monte-Carlo returns with no episode ended in the rollout: no step has a return, so the losses
    are 0 (not NaN: a mean over no steps) and the agent is left as it was."""
    cfg = ReinforceConfig(num_envs=3, num_steps=3, total_steps=9, hidden=(), gamma=0.5, baseline=False,
                          normalize_advantages=True, entropy_coef=0.1)
    t = Reinforce(cfg)
    fixed_agent(t)
    batch = reinforce_batch()
    batch["done"] = torch.zeros_like(batch["done"])
    batch["terminated"] = torch.zeros_like(batch["terminated"])
    monkeypatch.setattr(t, "collect_rollout", lambda *args, **kw: batch)
    before = {k: v.clone() for k, v in t.agent.state_dict().items()}
    m = t.train_iteration()
    assert (m["policy_loss"].item(), m["value_loss"].item(), m["valid_fraction"].item()) == (0.0, 0.0, 0.0)
    for k, v in t.agent.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("action_dims", [1, 2], ids=["one_action_dim", "two_action_dims"])
def test_gaussian_log_probs_by_hand(action_dims):
    """A Box policy's log-prob and entropy are summed over the action dims, one per sample."""
    t = A2C(A2CConfig(env_id="Pendulum-v1", num_envs=2, num_steps=2, hidden=()))
    t.agent = ActorCritic(t.obs_dim, action_dims, continuous=True, hidden=())
    mu, sigma = [0.5, -1.0][:action_dims], [2.0, 0.5][:action_dims]
    with torch.no_grad():
        t.agent.actor[0].weight.zero_()
        t.agent.actor[0].bias.copy_(torch.tensor(mu))
        t.agent.log_std.copy_(torch.tensor(sigma).log())
    a = [[1.5, 0.0], [0.5, -2.0], [-1.5, -1.0]]  # three samples
    batch = {"rewards": torch.zeros(3, 1), "obs": torch.zeros(3, 1, 3),
             "actions": torch.tensor([row[:action_dims] for row in a]).reshape(3, 1, action_dims)}
    _, logp, entropy = t.flat_log_probs(batch)
    expected_logp = [sum(-0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
                         for x, m, s in zip(row, mu, sigma)) for row in a]
    expected_entropy = sum(0.5 + 0.5 * math.log(2 * math.pi) + math.log(s) for s in sigma)
    torch.testing.assert_close(logp, torch.tensor(expected_logp))
    torch.testing.assert_close(entropy, torch.full((3,), expected_entropy))


def test_dqn_loss_over_a_batch_of_different_transitions_by_hand(monkeypatch):
    # Two envs (columns) hold different transitions; the batch is one of each. Online Q = (0, 1),
    # target Q = (5, 2), gamma 0.5, double DQN: y = r + 0.5 * 2 unless terminated.
    #   env 0: r = 1, a = 0 (Q 0), not terminated: y = 2, error -2
    #   env 1: r = 2.5, a = 1 (Q 1), terminated: y = 2.5, error -1.5
    cfg = DQNConfig(num_envs=2, n_step=1, buffer_size=4, batch_size=2, hidden=(), gamma=0.5, loss="mse",
                    max_grad_norm=1e9)
    t = DQN(cfg)
    set_linear(t.q.net[0], 0.0, [0.0, 1.0])
    set_linear(t.q_target.net[0], 0.0, [5.0, 2.0])
    t.buffer.add(observations([0.2, 0.3]), observations([0.4, 0.5]), torch.tensor([0, 1]), torch.tensor([1.0, 2.5]),
                 torch.tensor([False, True]), torch.tensor([False, True]))
    rows, cols = torch.zeros(1, 2, dtype=torch.long), torch.tensor([0, 1])  # step 0 of each env
    monkeypatch.setattr(t.buffer, "sample_windows", lambda batch, n, generator=None: (rows, cols))
    m = t._learn()
    assert m["q_values"].item() == pytest.approx(0.5)
    assert m["td_loss"].item() == pytest.approx((4 + 2.25) / 2)  # mean of the squared errors (-2, -1.5)


@pytest.mark.parametrize("t,expected", [(0, 0.05), (1, 0.05), (7, 0.05)])
def test_linear_schedule_of_zero_duration_is_at_its_end(t, expected):
    assert linear_schedule(1.0, 0.05, 0, t) == expected


@pytest.mark.parametrize("t,expected", [(0, 1.0), (5, 0.525), (10, 0.05), (20, 0.05)])
def test_linear_schedule_by_hand(t, expected):
    assert linear_schedule(1.0, 0.05, 10, t) == pytest.approx(expected)
