"""fastrl.load_policy / export_policy: a trained policy used without its trainer."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import fastrl
from fastrl.algos import DQN, PPO, DQNConfig, PPOConfig
from fastrl.utils.checkpoint import CheckpointError


def _trained(tmp_path, trainer):
    trainer.train()
    trainer.save(tmp_path / "checkpoint.pt")
    return trainer, fastrl.load_policy(tmp_path)  # a run directory holding checkpoint.pt


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    cfg = PPOConfig(env_id="CartPole-v1", num_envs=4, num_steps=8, total_steps=64, seed=1, normalize_obs=True)
    return _trained(tmp_path_factory.mktemp("ppo"), PPO(cfg))


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    cfg = PPOConfig(env_id="Pendulum-v1", num_envs=4, num_steps=8, total_steps=64, seed=2, normalize_obs=True)
    return _trained(tmp_path_factory.mktemp("ppo"), PPO(cfg))


@pytest.fixture(scope="module")
def dqn(tmp_path_factory):
    cfg = DQNConfig(env_id="CartPole-v1", num_envs=2, total_steps=200, learning_starts=50, seed=3)
    return _trained(tmp_path_factory.mktemp("dqn"), DQN(cfg))


def _observations(n, dim, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", ["cartpole", "pendulum", "dqn"])
def test_greedy_actions_equal_the_trainers(case, request):
    trainer, policy = request.getfixturevalue(case)
    obs = _observations(64, trainer.obs_dim)
    expected = trainer.act(obs, deterministic=True)
    assert policy.obs_norm is not None or case == "dqn"  # normalized runs keep their statistics
    torch.testing.assert_close(policy.act(obs), expected, rtol=0, atol=0)
    assert not any(p.requires_grad for p in policy.parameters()) and not policy.training


def test_sampled_actions_follow_the_trainers_distribution(cartpole, pendulum):
    for trainer, policy in (cartpole, pendulum):
        obs = _observations(32, trainer.obs_dim, seed=4)
        torch.manual_seed(5)
        expected = trainer.act(obs, deterministic=False)
        torch.manual_seed(5)
        torch.testing.assert_close(policy.act(obs, deterministic=False), expected)


def test_numpy_and_single_observations_come_back_as_the_same_kind(cartpole, pendulum):
    trainer, policy = cartpole
    batch = _observations(5, 4)
    greedy = trainer.act(batch).tolist()
    single = policy.act(batch[2].numpy())
    assert type(single) is int and single == greedy[2]
    assert policy.act(batch[2]) == greedy[2] and type(policy.act(batch[2])) is int
    out = policy.act(batch.numpy())
    assert isinstance(out, np.ndarray) and out.shape == (5,) and out.tolist() == greedy
    assert policy.act(batch.double().tolist()).tolist() == greedy  # a list of lists, float64
    trainer, policy = pendulum
    one = policy.act(batch[0, :3].numpy())
    assert isinstance(one, np.ndarray) and one.shape == (1,)
    assert one[0] == pytest.approx(trainer.act(batch[:1, :3])[0, 0].item())


def test_bad_input_is_a_clear_error(cartpole, dqn, tmp_path):
    _, policy = cartpole
    with pytest.raises(ValueError, match=r"obs must have shape \(4,\) \(one observation\) or \[N, 4\].*got \(3,\)"):
        policy.act(np.zeros(3))
    with pytest.raises(ValueError, match=r"got \(2, 5\)"):
        policy.act(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="deterministic=False: a Q-network policy"):
        dqn[1].act(np.zeros(4), deterministic=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        fastrl.load_policy(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fastrl.load_policy(tmp_path / "missing")


_RUN_WITHOUT_FASTRL = """
import sys
sys.modules["fastrl"] = None  # importing fastrl now fails: the program must not need it
import torch
program = torch.export.load(sys.argv[1]).module()
torch.save([program(obs) for obs in torch.load(sys.argv[2])], sys.argv[3])
"""


@pytest.mark.parametrize("case", ["cartpole", "pendulum"])  # DQN's greedy head is cartpole's argmax
def test_exported_program_runs_with_plain_torch_at_any_batch_size(case, request, tmp_path):
    trainer, policy = request.getfixturevalue(case)
    path = fastrl.export_policy(policy, tmp_path / "policy.pt2")
    batches = [_observations(n, trainer.obs_dim, seed=n) for n in (1, 7)]
    torch.save(batches, tmp_path / "obs.pt")
    subprocess.run([sys.executable, "-c", _RUN_WITHOUT_FASTRL, str(path), str(tmp_path / "obs.pt"),
                    str(tmp_path / "out.pt")], check=True, cwd=tmp_path)
    for obs, actions in zip(batches, torch.load(tmp_path / "out.pt"), strict=True):
        torch.testing.assert_close(actions, trainer.act(obs), rtol=0, atol=0)


def test_cli_export_writes_the_program_and_bad_input_is_one_line(cartpole, tmp_path, capsys):
    from fastrl import cli

    trainer, _ = cartpole
    run = tmp_path / "run"
    trainer.save(run / "checkpoint.pt")
    assert cli.main(["export", str(run), "--out", str(tmp_path / "p.pt2")]) == 0
    assert "wrote" in capsys.readouterr().out
    obs = _observations(3, 4, seed=9)
    actions = torch.export.load(tmp_path / "p.pt2").module()(obs)
    torch.testing.assert_close(actions, trainer.act(obs), rtol=0, atol=0)
    assert cli.main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "q.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrl export: no checkpoint at") and err.count("\n") == 1
