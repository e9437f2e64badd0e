"""A network of the user's own in place of the default MLP (the documented `network=` argument)."""

import pytest
import torch
from torch import nn

from fastrl.algos import DQN, PPO, DQNConfig, PPOConfig
from fastrl.nn import ActorCritic
from fastrl.utils.checkpoint import CheckpointError


class WideActorCritic(ActorCritic):
    """The interface of ActorCritic (dist, value, act) with other layers: one hidden layer of 32."""

    def __init__(self):
        super().__init__(4, 2, continuous=False, hidden=(32,))


def test_ppo_trains_the_given_network_in_place_and_resumes_with_it(tmp_path):
    network = WideActorCritic()
    before = [p.detach().clone() for p in network.parameters()]
    trainer = PPO(PPOConfig(env_id="CartPole-v1", num_envs=4, num_steps=16, total_steps=128), network=network)
    assert trainer.agent is network
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, network.parameters()))
    trainer.save(tmp_path / "checkpoint.pt")
    resumed = PPO.from_checkpoint(tmp_path, network=WideActorCritic())
    obs = torch.randn(8, 4)
    torch.testing.assert_close(resumed.act(obs), trainer.act(obs), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="does not fit this ppo trainer"):
        PPO.from_checkpoint(tmp_path)  # the default MLP cannot hold the run's weights


def test_dqn_takes_a_q_network_and_bad_input_is_a_type_error():
    q = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    trainer = DQN(DQNConfig(env_id="CartPole-v1", num_envs=2, total_steps=64, learning_starts=16), network=q)
    trainer.train()
    assert trainer.q is q and trainer.q_target is not q
    torch.testing.assert_close(trainer.act(torch.zeros(3, 4)), q(torch.zeros(3, 4)).argmax(-1))
    with pytest.raises(TypeError, match="network must be a torch.nn.Module, got str"):
        DQN(DQNConfig(env_id="CartPole-v1", num_envs=2), network="mlp")
