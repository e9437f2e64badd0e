"""CPU vs CUDA trajectories of every native env and MinAtar game, in both autoreset modes: every
output of every step (observations, rewards, terminated, truncated, and the info dict: episode
statistics and their mask, final observations in same_step mode), then the running statistics and
the state. Run with a GPU only (skipped here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastrl.envs as fenvs
from tests.conftest import requires_native
from tests.envs.helpers import sample_actions, to_torch_actions

N, STEPS = 256, 60
MODES = ["next_step", "same_step"]


def flat(prefix: str, x) -> dict[str, torch.Tensor]:
    """Every tensor of a step's outputs, by name (``info.episode.r``, ...), on the CPU."""
    if isinstance(x, dict):
        return {k: v for key, value in x.items() for k, v in flat(f"{prefix}.{key}", value).items()}
    if isinstance(x, (tuple, list)):
        return {k: v for i, value in enumerate(x) for k, v in flat(f"{prefix}.{i}", value).items()}
    return {prefix: x.cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))}


def trajectory(env_id: str, device: str, dtype: torch.dtype, mode: str, actions) -> list[dict]:
    kwargs = {} if env_id in fenvs.MINATAR_ENVS else {"dtype": dtype}
    env = fenvs.make(env_id, N, device=device, seed=5, autoreset_mode=mode, max_episode_steps=25, **kwargs)
    steps = [flat("reset", env.reset())]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a.to(device))
        steps.append(flat("step", (obs, reward, terminated, truncated, info)))
    steps.append(flat("end", (env.episode_returns, env.episode_lengths, env.get_state())))
    return steps


def compare(cpu: list[dict], cuda: list[dict], tol: dict) -> None:
    assert len(cpu) == len(cuda)
    for t, (a, b) in enumerate(zip(cpu, cuda)):
        assert a.keys() == b.keys(), (t, sorted(a), sorted(b))
        assert any(".episode" in k for k in a) or t == 0 or t == len(cpu) - 1, sorted(a)
        for key in a:
            if a[key].is_floating_point():
                torch.testing.assert_close(b[key], a[key], **tol, msg=lambda m, k=key, t=t: f"step {t} {k}: {m}")
            else:  # flags, lengths, masks, bool observations: exactly
                assert torch.equal(b[key], a[key]), f"step {t} {key} differs"


@pytest.mark.cuda
@requires_native
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("env_id", fenvs.NATIVE_ENVS)
def test_classic_env_outputs_match(env_id, dtype, mode):
    """float32 shares its sin/cos code on both devices: bit for bit. float64 calls each device's
    libm, whose last bits may differ (docs/envs.md): close, and the same flags."""
    rng = np.random.default_rng(0)
    env = fenvs.make(env_id, 1, dtype=dtype)
    actions = [to_torch_actions(sample_actions(env_id, rng, N), env) for _ in range(STEPS)]
    tol = dict(rtol=0, atol=0) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-9)
    compare(trajectory(env_id, "cpu", dtype, mode, actions), trajectory(env_id, "cuda", dtype, mode, actions), tol)


@pytest.mark.cuda
@requires_native
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", [i for i in fenvs.MINATAR_ENVS if i.endswith("-v1")])
def test_minatar_outputs_match(env_id, mode):
    n_actions = fenvs.make(env_id, 1).single_action_space.n
    g = torch.Generator().manual_seed(1)
    actions = [torch.randint(0, n_actions, (N,), generator=g) for _ in range(STEPS)]
    exact = dict(rtol=0, atol=0)
    compare(trajectory(env_id, "cpu", None, mode, actions), trajectory(env_id, "cuda", None, mode, actions), exact)
