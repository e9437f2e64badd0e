"""Trainers, one readable file per algorithm: DQN, REINFORCE, A2C and PPO.

    from fastrl.algos import PPO, PPOConfig
    trainer = PPO(PPOConfig(env_id="CartPole-v1", total_steps=100_000), out_dir="runs/ppo")
    trainer.train()
"""

from fastrl.algos.a2c import A2C, A2CConfig
from fastrl.algos.common import TrainConfig, Trainer
from fastrl.algos.dqn import DQN, DQNConfig
from fastrl.algos.ppo import PPO, PPOConfig
from fastrl.algos.reinforce import Reinforce, ReinforceConfig

ALGOS: dict[str, type[Trainer]] = {"dqn": DQN, "reinforce": Reinforce, "a2c": A2C, "ppo": PPO}

__all__ = ["ALGOS", "A2C", "A2CConfig", "DQN", "DQNConfig", "PPO", "PPOConfig", "Reinforce",
           "ReinforceConfig", "Trainer", "TrainConfig"]
