"""How the trainers turn the envs' ``info["episode"]`` into the logged episodic_return,
episodic_length and return_last100: a hand-worked script of episodes (several ending in one step,
rows with none), the 100-episode window, and real runs against a scalar count of the rewards and
ends the envs returned (terminations with mixed lengths, truncation only, SAME_STEP autoreset)."""

import math

import pytest
import torch

from fastrl.algos import ALGOS, PPO, PPOConfig


def scripted_infos(trainer, script: dict[int, dict[int, tuple[float, int]]]) -> None:
    """The env steps as usual, but reports the episodes of ``script`` instead: at global step
    index t (counting env.step calls), env i ends an episode of (return, length)."""
    step, calls = trainer.env.step, [0]

    def scripted(actions):
        obs, reward, term, trunc, info = step(actions)
        n = trainer.config.num_envs
        r, length, ended = torch.zeros(n), torch.zeros(n, dtype=torch.int32), torch.zeros(n, dtype=torch.bool)
        for i, (ret, ln) in script.get(calls[0], {}).items():
            r[i], length[i], ended[i] = ret, ln, True
        calls[0] += 1
        return obs, reward, term, trunc, {**info, "episode": {"r": r, "l": length}, "_episode": ended}

    trainer.env.step = scripted


def test_logged_rows_by_hand():
    # 3 envs, 2 steps per iteration, a row every 2 iterations (4 env steps), 4 iterations.
    t = PPO(PPOConfig(num_envs=3, num_steps=2, num_minibatches=1, total_steps=3 * 2 * 4, hidden=(8,), log_every=2))
    scripted_infos(t, {
        0: {1: (5.0, 5)},                   # env 1 ends an episode of return 5, length 5
        2: {0: (10.0, 10), 2: (2.0, 3)},    # two end in the same step, with different lengths
        # steps 4-7 (the second row): no episode ends
    })
    t.train()
    first, second = t.history
    # first row: returns {5, 10, 2}: mean 17/3; lengths {5, 10, 3}: mean 6
    assert first["episodic_return"] == pytest.approx(17 / 3)
    assert first["episodic_length"] == pytest.approx(6.0)
    assert first["return_last100"] == pytest.approx(17 / 3)
    # second row: nothing ended: no episodic numbers, the window keeps its 3 episodes
    assert math.isnan(second["episodic_return"]) and math.isnan(second["episodic_length"])
    assert second["return_last100"] == pytest.approx(17 / 3)
    assert t.summary()["episodes_seen"] == 3


def test_return_last100_is_the_last_100_episodes():
    # Rows of 3 episodes (5, 10, 2), then 98 of return 1: the window holds 10, 2 and the 98 ones,
    # so return_last100 = (12 + 98) / 100 = 1.1 (with the 5 it would be 115 / 101).
    t = PPO(PPOConfig(num_envs=98, num_steps=1, num_minibatches=1, total_steps=98 * 2, hidden=(8,)))
    scripted_infos(t, {0: {0: (5.0, 1), 1: (10.0, 1), 2: (2.0, 1)}, 1: {i: (1.0, 1) for i in range(98)}})
    t.train()
    assert [row["return_last100"] for row in t.history] == pytest.approx([17 / 3, 1.1])
    assert t.history[1]["episodic_return"] == pytest.approx(1.0)
    assert t.summary()["episodes_seen"] == 100


CASES = {  # terminations with mixed lengths (CartPole), truncation only (Pendulum's 200 steps)
    "ppo-CartPole": ("ppo", dict(env_id="CartPole-v1", num_envs=4, num_steps=16, num_minibatches=2,
                                 total_steps=4 * 16 * 8, hidden=(8,))),
    "reinforce-CartPole": ("reinforce", dict(env_id="CartPole-v1", num_envs=4, num_steps=16,
                                             total_steps=4 * 16 * 8, hidden=(8,))),
    "dqn-CartPole": ("dqn", dict(env_id="CartPole-v1", num_envs=4, total_steps=4 * 160, learning_starts=64,
                                 batch_size=8, buffer_size=512, hidden=(8,))),
    "a2c-Pendulum": ("a2c", dict(env_id="Pendulum-v1", num_envs=2, num_steps=25, total_steps=2 * 25 * 20,
                                 hidden=(8,))),
}


@pytest.mark.parametrize("case", CASES)
def test_logged_episodes_match_a_scalar_count(case):
    algo, values = CASES[case]
    cls = ALGOS[algo]
    log_every = 4
    t = cls(cls.Config(**values, seed=2, log_every=log_every))
    steps, step = [], t.env.step

    def recording(actions):
        out = step(actions)
        steps.append((t.iteration // log_every, out[1].tolist(), out[2].tolist(), out[3].tolist()))
        return out

    t.env.step = recording
    t.train()
    assert t.iteration % log_every == 0  # every row closes a full group of iterations

    # SAME_STEP autoreset: every step belongs to an episode; the step that ends one is its last,
    # the next step the first of the next episode.
    n = t.config.num_envs
    running_return, running_length = [0.0] * n, [0] * n
    rows = [([], []) for _ in t.history]
    for row, rewards, terminated, truncated in steps:
        for i in range(n):
            running_return[i] += rewards[i]
            running_length[i] += 1
            if terminated[i] or truncated[i]:
                rows[row][0].append(running_return[i])
                rows[row][1].append(running_length[i])
                running_return[i], running_length[i] = 0.0, 0
    every = [r for returns, _ in rows for r in returns]
    assert len(every) >= 4 and any(returns for returns, _ in rows)
    if case.endswith("CartPole"):
        assert len({ln for _, lengths in rows for ln in lengths}) > 1  # mixed lengths
    else:
        assert not any(any(terminated) for _, _, terminated, _ in steps)  # Pendulum only truncates
    seen = 0
    for logged, (returns, lengths) in zip(t.history, rows):
        seen += len(returns)
        if returns:
            assert logged["episodic_return"] == pytest.approx(sum(returns) / len(returns), rel=1e-5)
            assert logged["episodic_length"] == pytest.approx(sum(lengths) / len(lengths))
        else:
            assert math.isnan(logged["episodic_return"]) and math.isnan(logged["episodic_length"])
        window = every[max(0, seen - 100):seen]
        if window:
            assert logged["return_last100"] == pytest.approx(sum(window) / len(window), rel=1e-5)
    assert t.summary()["episodes_seen"] == min(100, len(every))
