"""Drive fastrl envs and gymnasium's side by side from injected states."""

from __future__ import annotations

import gymnasium
import numpy as np
import torch

# Start states next to every termination boundary (and clipping/wrapping edge), then ordinary ones.
START_STATES = {
    "CartPole-v1": [
        [2.395, 0.3, 0.0, 0.0], [-2.395, -0.3, 0.0, 0.0], [0.0, 0.0, 0.2090, 0.3],
        [0.0, 0.0, -0.2090, -0.3], [0.01, -0.02, 0.03, 0.04], [-0.04, 0.03, -0.02, 0.01],
    ],
    "Acrobot-v1": [
        [2.2, 0.6, 1.0, 0.5], [-2.2, -0.6, -1.0, -0.5], [3.1, -3.1, 12.5, -28.2],
        [-3.1, 3.1, -12.5, 28.2], [0.05, -0.02, 0.03, 0.07],
    ],
    "MountainCar-v0": [[0.49, 0.02], [-1.19, -0.07], [0.55, 0.069], [-0.5, 0.0], [-0.3, -0.05]],
    "MountainCarContinuous-v0": [[0.44, 0.02], [-1.19, -0.07], [0.59, 0.069], [-0.5, 0.0], [-0.3, 0.05]],
    "Pendulum-v1": [[3.14, 7.9], [-3.14, -7.9], [50.0, 1.0], [0.1, -0.2], [-1.5, 3.0]],
}


def sample_actions(env_id: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Random actions as gymnasium takes them; continuous ones include values outside the box."""
    space = gymnasium.make(env_id).action_space
    if isinstance(space, gymnasium.spaces.Discrete):
        return rng.integers(0, space.n, size=n)
    return rng.uniform(1.25 * space.low[0], 1.25 * space.high[0], size=(n, 1)).astype(np.float32)


def inject(genv, env_id: str, state, elapsed: int) -> None:
    """Sets gymnasium's state as its own reset (elapsed 0) or step (elapsed > 0) would leave it:
    MountainCarContinuous keeps a float32 state after a step, the others float64."""
    dtype = np.float32 if env_id == "MountainCarContinuous-v0" and elapsed > 0 else np.float64
    genv.unwrapped.state = np.array(state, dtype=dtype)
    if env_id == "CartPole-v1":
        genv.unwrapped.steps_beyond_terminated = None
    genv._elapsed_steps = elapsed


def make_gym(env_id: str, n: int, **kwargs):
    envs = [gymnasium.make(env_id, **kwargs) for _ in range(n)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    return envs


def gym_state(genv) -> list[float]:
    return [float(x) for x in np.asarray(genv.unwrapped.state, dtype=np.float64)]


def to_torch_actions(actions: np.ndarray, env) -> torch.Tensor:
    a = torch.from_numpy(actions)
    return a if a.dtype == torch.int64 else a.to(env.dtype)


# A non-native id with a Box action space (the installed gymnasium's other ids have Discrete
# ones): gymnasium's own Pendulum under another name, so it runs on GymnasiumVectorEnv.
FALLBACK_PENDULUM = "fastrl-test/Pendulum-v1"
if FALLBACK_PENDULUM not in gymnasium.registry:
    gymnasium.register(FALLBACK_PENDULUM, entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
                       max_episode_steps=200)
