"""env_kwargs: the environment's own keyword arguments and max_episode_steps, from every config."""

import pytest

from fastrl import cli
from fastrl.algos import DQN, PPO, DQNConfig, PPOConfig
from fastrl.utils.config import ConfigError


def test_max_episode_steps_reaches_training_and_evaluation_envs_and_the_checkpoint(tmp_path):
    cfg = PPOConfig(env_id="CartPole-v1", env_kwargs={"max_episode_steps": 7}, num_envs=4, num_steps=16,
                    total_steps=128, seed=2)
    trainer = PPO(cfg)
    trainer.train()
    assert max(row["episodic_length"] for row in trainer.history) <= 7
    assert max(trainer.evaluate(5)) <= 7  # CartPole's return is its length
    trainer.save(tmp_path / "checkpoint.pt")
    resumed = PPO.from_checkpoint(tmp_path)
    assert resumed.config.env_kwargs == {"max_episode_steps": 7} and max(resumed.evaluate(3)) <= 7


def test_an_env_parameter_reaches_the_env():
    trainer = DQN(DQNConfig(env_id="MountainCar-v0", env_kwargs={"goal_velocity": 0.25}, num_envs=2))
    assert trainer.env.params["goal_velocity"] == 0.25


@pytest.mark.parametrize("env_kwargs, message", [
    ({"bogus": 1}, r"env_kwargs \{'bogus': 1\}: CartPole-v1 got unexpected keyword arguments \['bogus'\]"),
    ({"max_episode_steps": 0}, r"env_kwargs .*max_episode_steps"),
    ({"max_episode_steps": [3]}, r"env_kwargs\['max_episode_steps'\] must be a number, a bool, a string or None"),
    ({1: 2}, "env_kwargs keys must be strings"),
    ("max_episode_steps=3", "env_kwargs must be a table of keyword arguments"),
], ids=["unknown-key", "bad-limit", "list-value", "int-key", "not-a-table"])  # fmt: skip
def test_bad_env_kwargs_are_a_config_error_naming_the_field(env_kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PPO(PPOConfig(env_id="CartPole-v1", env_kwargs=env_kwargs, num_envs=2))


def test_cli_takes_a_json_object(monkeypatch, tmp_path, capsys):
    seen = []

    def stop(self, config, **kwargs):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(PPO, "__init__", stop)
    args = ["train", "ppo", "--env", "CartPole-v1", "--out", str(tmp_path / "run")]
    assert cli.main([*args, "--env-kwargs", '{"max_episode_steps": 30}']) == 130
    assert seen[0].env_kwargs == {"max_episode_steps": 30}
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--env-kwargs", "[1, 2]"])
    assert exit_info.value.code == 2 and "--env-kwargs must be a JSON object" in capsys.readouterr().err
