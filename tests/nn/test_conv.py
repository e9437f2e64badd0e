"""The convolutional networks for image observations (fastrl/nn/conv.py): the MinAtar paper's
architecture, checked against a loop, on the envs' bool observations."""

import pytest
import torch

import fastrl.envs as fenvs
from fastrl.nn import ConvActorCritic, ConvQNetwork, MinAtarTorso


def test_sizes_are_the_papers():
    """One 3x3 conv of 16 channels and a 128-unit layer: parameters counted by hand."""
    conv4, fc = 4 * 16 * 9 + 16, 16 * 8 * 8 * 128 + 128  # 592, 131200
    assert sum(p.numel() for p in ConvQNetwork((10, 10, 4), 3).parameters()) == conv4 + fc + 128 * 3 + 3
    conv10 = 10 * 16 * 9 + 16
    ac = ConvActorCritic((10, 10, 10), 6)
    assert sum(p.numel() for p in ac.parameters()) == 2 * (conv10 + fc) + (128 * 6 + 6) + (128 + 1)


def test_torso_equals_a_loop():
    """The torso of an image [H, W, C] (channels last, as the envs give them), computed cell by
    cell from its weights: conv over each 3x3 window, ReLU, flattened channel-major, linear, ReLU."""
    torch.manual_seed(0)
    torso = MinAtarTorso((6, 5, 3), channels=4, hidden=7).double()
    obs = torch.rand(2, 6, 5, 3) < 0.4
    w, b = torso.conv.weight.detach(), torso.conv.bias.detach()  # [4, 3, 3, 3], [4]
    fc_w, fc_b = torso.fc.weight.detach(), torso.fc.bias.detach()
    expected = torch.zeros(2, 7, dtype=torch.float64)
    for n in range(2):
        feats = []
        for k in range(4):
            for i in range(4):
                for j in range(3):
                    v = b[k] + sum(w[k, c, di, dj] * float(obs[n, i + di, j + dj, c])
                                   for c in range(3) for di in range(3) for dj in range(3))
                    feats.append(max(float(v), 0.0))
        expected[n] = (fc_w @ torch.tensor(feats, dtype=torch.float64) + fc_b).clamp(min=0)
    torch.testing.assert_close(torso(obs).detach(), expected)


def test_bool_float_flat_and_batched_inputs_agree():
    """The envs' bool observations, as floats, flattened as the trainers pass them today, and with
    more leading dims: the same values."""
    env = fenvs.make("MinAtar/Seaquest-v1", 8, seed=0)
    obs, _ = env.reset()
    for _ in range(30):
        obs, *_ = env.step(torch.randint(0, 6, (8,)))
    assert obs.dtype == torch.bool
    q = ConvQNetwork(env.single_observation_space.shape, env.single_action_space.n)
    out = q(obs)
    assert out.shape == (8, 6) and out.dtype == torch.float32
    torch.testing.assert_close(q(obs.float()), out, rtol=0, atol=0)
    torch.testing.assert_close(q(obs.flatten(1).float()), out, rtol=0, atol=0)
    torch.testing.assert_close(q(obs.view(2, 4, 10, 10, 10)), out.view(2, 4, 6), rtol=0, atol=0)
    torch.testing.assert_close(q(obs[3]), out[3])  # one obs, no batch dim (another matmul: not bit for bit)


def test_actor_critic_interface_and_gradients():
    torch.manual_seed(1)
    obs = torch.rand(5, 10, 10, 4) < 0.2
    ac = ConvActorCritic((10, 10, 4), 3)
    dist, value = ac.dist(obs), ac.value(obs)
    assert dist.logits.shape == (5, 3) and value.shape == (5,) and not ac.continuous
    assert torch.equal(ac.act(obs, deterministic=True), dist.logits.argmax(-1))
    sampled = ac.act(obs)
    assert sampled.shape == (5,) and sampled.dtype == torch.int64 and bool(((sampled >= 0) & (sampled < 3)).all())
    (dist.log_prob(sampled).sum() + value.sum()).backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in ac.parameters())


def test_bad_shapes_name_the_argument():
    q = ConvQNetwork((10, 10, 4), 3)
    with pytest.raises(ValueError, match=r"obs must have shape \[\.\.\., 10, 10, 4\] or \[\.\.\., 400\]"):
        q(torch.zeros(2, 10, 10, 5))
    with pytest.raises(ValueError, match="obs_shape must be"):
        ConvQNetwork((10, 40), 3)
    with pytest.raises(ValueError, match="obs_shape must be"):
        ConvActorCritic((2, 10, 4), 3)
