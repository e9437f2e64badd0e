"""Tuned defaults per algorithm and environment: what ``fastrl train ALGO --env ID`` starts from
before a config file and flags are applied (docs/trainers.md has the table and the figures)."""

from __future__ import annotations

from fastrl.envs import MINATAR_ENVS

TUNED: dict[str, dict[str, dict]] = {
    "ppo": {
        # Many envs, few large minibatches: 16 gradient steps per 1024 transitions keeps the
        # wall time low; gamma 0.98 / lambda 0.8 as in the SB3 zoo. Solves in ~100-140k steps.
        "CartPole-v1": dict(num_envs=32, num_steps=32, total_steps=150_000, learning_rate=2.5e-3,
                            epochs=4, num_minibatches=4, gamma=0.98, gae_lambda=0.8,
                            target_return=475.0),
        "Acrobot-v1": dict(num_envs=16, num_steps=128, total_steps=300_000, learning_rate=2.5e-3,
                           entropy_coef=0.0, normalize_obs=True),
        "MountainCar-v0": dict(num_envs=16, num_steps=128, total_steps=1_000_000, entropy_coef=0.01,
                               normalize_obs=True),
        "Pendulum-v1": dict(num_envs=16, num_steps=256, total_steps=300_000, learning_rate=1e-3,
                            gamma=0.95, gae_lambda=0.95, epochs=10, num_minibatches=16,
                            normalize_obs=True, normalize_reward=True, init_log_std=-0.5,
                            eval_every=16_384, target_return=-170.0),
        "MountainCarContinuous-v0": dict(num_envs=16, num_steps=256, total_steps=500_000,
                                         normalize_obs=True, normalize_reward=True, entropy_coef=0.0),
    },
    "dqn": {
        # Stable-Baselines3 zoo's CartPole DQN (bursts of 128 gradient steps every 256 env steps,
        # target synced each iteration) with 3-step targets; stops once the greedy policy
        # averages 490 over 25 evaluation episodes.
        "CartPole-v1": dict(num_envs=8, total_steps=100_000, learning_starts=1_000, batch_size=64,
                            train_every=32, gradient_steps=128, target_update_every=1,
                            learning_rate=2.3e-3, exploration_fraction=0.16, end_epsilon=0.04,
                            hidden=(128, 128), n_step=3, buffer_size=100_000, eval_every=4_000,
                            target_return=490.0),
        "Acrobot-v1": dict(num_envs=8, total_steps=150_000),
        "MountainCar-v0": dict(num_envs=8, total_steps=300_000, exploration_fraction=0.5),
    },
    "a2c": {
        "CartPole-v1": dict(num_envs=16, total_steps=500_000, target_return=475.0),
        "Pendulum-v1": dict(num_envs=16, num_steps=8, total_steps=1_000_000, normalize_obs=True,
                            gamma=0.9, gae_lambda=0.9, learning_rate=7e-4, init_log_std=-0.5),
    },
    "reinforce": {
        "CartPole-v1": dict(num_envs=16, total_steps=500_000, target_return=475.0),
    },
}

# MinAtar, every game and version (image observations: the MinAtar paper's conv network, one
# fully-connected layer of 128).
_MINATAR = {
    # gymnax's PPO on MinAtar (gymnax-blines agents/*-MinAtar/ppo.yaml): 64 envs x 128 steps, 8 minibatches,
    # 4 epochs, gamma 0.999, GAE lambda 0.95, entropy 0.01, clip 0.2; but the paper's conv net (theirs an MLP
    # of 2 x 256), and Adam at 4e-3 annealed to 0 over 5M frames (theirs a constant 5e-4 over 10M): with the
    # conv net, 4e-3 learned about twice as fast as 5e-4 on Breakout and SpaceInvaders (docs/trainers.md),
    # and 5M frames are about 15 minutes of one CPU thread.
    "ppo": dict(num_envs=64, num_steps=128, total_steps=5_000_000, learning_rate=4e-3, anneal_lr=True,
                num_minibatches=8, epochs=4, gamma=0.999, gae_lambda=0.95, entropy_coef=0.01, hidden=(128,)),
    # The MinAtar paper's DQN (Young & Tian 2019): replay 100k, batch 32, target synced every 1000 frames,
    # epsilon 1 -> 0.1 over the first 100k frames, learning from frame 5000, 1-step targets, one gradient
    # step per frame (4 envs: 4 gradient steps per iteration, target every 250 iterations), 5M frames,
    # centred RMSProp at 2.5e-4, the paper's optimizer (Adam at 2.5e-4 scored alike to 1.65M frames: docs/trainers.md).
    "dqn": dict(num_envs=4, total_steps=5_000_000, buffer_size=100_000, batch_size=32, gradient_steps=4,
                target_update_every=250, start_epsilon=1.0, end_epsilon=0.1, exploration_steps=100_000,
                learning_starts=5_000, learning_rate=2.5e-4, optimizer="rmsprop", n_step=1, double_dqn=False,
                hidden=(128,)),
    # No tuning: the conv network's width, which the MLP default does not give.
    "a2c": dict(hidden=(128,)),
    "reinforce": dict(hidden=(128,)),
}
for _algo, _values in _MINATAR.items():
    TUNED[_algo].update({env_id: dict(_values) for env_id in MINATAR_ENVS})


def tuned_defaults(algo: str, env_id: str) -> dict:
    """Config values for this pair: ``env_id`` and the overrides tuned for it (none when the
    dataclass defaults are the best we know)."""
    return {"env_id": env_id, **TUNED.get(algo, {}).get(env_id, {})}
