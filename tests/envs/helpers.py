"""Drive fastrl envs and gymnasium's side by side from injected states."""

from __future__ import annotations

import dataclasses
import math

import gymnasium
import numpy as np
import torch

PI = math.pi
THETA = 12 * 2 * PI / 360  # CartPole's termination angle


@dataclasses.dataclass(frozen=True, kw_only=True)
class EnvCase:
    """What the env tests need of a native env beyond its spec (a new native env adds one)."""

    # Start states next to every termination boundary (and clipping/wrapping edge), then ordinary ones.
    start_states: list[list[float]]
    # Per state component, the range states reach (the property tests draw from them, bounds
    # included). Velocities without a bound in gymnasium get a range wider than episodes reach.
    state_ranges: list[tuple[float, float]]
    # max_episode_steps of the parity tests: short, so that truncation happens too.
    parity_limit: int


ENV_CASES = {
    "CartPole-v1": EnvCase(
        start_states=[[2.395, 0.3, 0.0, 0.0], [-2.395, -0.3, 0.0, 0.0], [0.0, 0.0, 0.2090, 0.3],
                      [0.0, 0.0, -0.2090, -0.3], [0.01, -0.02, 0.03, 0.04], [-0.04, 0.03, -0.02, 0.01]],
        state_ranges=[(-2.4, 2.4), (-4.0, 4.0), (-THETA, THETA), (-4.0, 4.0)],
        parity_limit=60,
    ),
    "Acrobot-v1": EnvCase(
        start_states=[[2.2, 0.6, 1.0, 0.5], [-2.2, -0.6, -1.0, -0.5], [3.1, -3.1, 12.5, -28.2],
                      [-3.1, 3.1, -12.5, 28.2], [0.05, -0.02, 0.03, 0.07]],
        state_ranges=[(-PI, PI), (-PI, PI), (-4 * PI, 4 * PI), (-9 * PI, 9 * PI)],
        parity_limit=80,
    ),
    "MountainCar-v0": EnvCase(
        start_states=[[0.49, 0.02], [-1.19, -0.07], [0.55, 0.069], [-0.5, 0.0], [-0.3, -0.05]],
        state_ranges=[(-1.2, 0.6), (-0.07, 0.07)],
        parity_limit=50,
    ),
    "MountainCarContinuous-v0": EnvCase(
        start_states=[[0.44, 0.02], [-1.19, -0.07], [0.59, 0.069], [-0.5, 0.0], [-0.3, 0.05]],
        state_ranges=[(-1.2, 0.6), (-0.07, 0.07)],
        parity_limit=50,
    ),
    "Pendulum-v1": EnvCase(
        start_states=[[3.14, 7.9], [-3.14, -7.9], [50.0, 1.0], [0.1, -0.2], [-1.5, 3.0]],
        # The angle is never wrapped: several turns.
        state_ranges=[(-6 * PI, 6 * PI), (-8.0, 8.0)],
        parity_limit=40,
    ),
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
