"""RLHF on language models: reward model from preferences, PPO with a KL penalty to a frozen
reference, GRPO and its critic-free estimators (Dr. GRPO, RLOO, REINFORCE++), DPO, reward
functions, runs that log, checkpoint and resume (``train_run``), and an offline demo task (``fastrl rlhf demo``)."""

from fastrl.rlhf.data import (
    Preference,
    encode_pairs,
    encode_prompts,
    load_preferences,
    preference_pairs,
    prompt_source,
)
from fastrl.rlhf.dpo import DPOConfig, DPOTrainer, dpo_loss, train_dpo
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig
from fastrl.rlhf.reward_model import (
    HFRewardModel,
    RewardModel,
    RewardModelConfig,
    train_reward_model,
)
from fastrl.rlhf.rewards import RewardFunctions
from fastrl.rlhf.run import run_config, train_run
from fastrl.rlhf.tokenizer import CharTokenizer, HFTokenizer, Tokenizer

__all__ = [
    "Preference",
    "load_preferences",
    "preference_pairs",
    "prompt_source",
    "encode_prompts",
    "encode_pairs",
    "Tokenizer",
    "CharTokenizer",
    "HFTokenizer",
    "RewardModel",
    "HFRewardModel",
    "RewardModelConfig",
    "train_reward_model",
    "RLHFPPOConfig",
    "PPOTrainer",
    "GRPOConfig",
    "GRPOTrainer",
    "RewardFunctions",
    "DPOConfig",
    "DPOTrainer",
    "dpo_loss",
    "train_dpo",
    "train_run",
    "run_config",
]
