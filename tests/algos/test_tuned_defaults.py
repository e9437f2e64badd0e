"""One rule for defaults: `fastrl train ALGO --env ID` runs ALGO.tuned_config(ID), and --help says so."""

import pytest

from fastrl import cli
from fastrl.algos import ALGOS, PPO, PPOConfig
from fastrl.algos.defaults import TUNED
from fastrl.utils.config import ConfigError


@pytest.mark.parametrize("algo, env_id", [("ppo", "CartPole-v1"), ("ppo", "Pendulum-v1"), ("dqn", "CartPole-v1"),
                                          ("a2c", "Acrobot-v1")])  # the last: an env without tuned values
def test_the_cli_runs_the_tuned_config_of_the_python_api(algo, env_id, monkeypatch, tmp_path):
    cls, seen = ALGOS[algo], []

    def stop(self, config, **kwargs):
        seen.append(config)
        raise KeyboardInterrupt  # the CLI's config is built; no training needed

    monkeypatch.setattr(cls, "__init__", stop)
    assert cli.main(["train", algo, "--env", env_id, "--seed", "3", "--out", str(tmp_path / "run")]) == 130
    assert seen == [cls.tuned_config(env_id, seed=3)]
    tuned = TUNED[algo].get(env_id, {})
    for name, value in tuned.items():
        assert getattr(seen[0], name) == value
    if not tuned:
        assert seen[0] == cls.Config(env_id=env_id, seed=3)


def test_tuned_config_differs_from_the_plain_dataclass_only_where_tuned():
    plain, tuned = PPOConfig(env_id="CartPole-v1"), PPO.tuned_config("CartPole-v1")
    assert plain.num_envs == 16 and tuned.num_envs == 32
    assert PPO.tuned_config("CartPole-v1", num_envs=4).num_envs == 4  # overrides win
    assert plain.max_grad_norm == tuned.max_grad_norm  # an untuned field keeps its default
    with pytest.raises(ConfigError, match="ent_coef was renamed entropy_coef"):
        PPO.tuned_config("CartPole-v1", ent_coef=0.1)


def test_help_shows_the_rule_and_each_flags_tuned_values(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "ppo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "PPO.tuned_config(ENV_ID, **overrides); PPOConfig(...) alone uses only the defaults" in text
    assert "(default: 16; tuned: CartPole-v1 32, Acrobot-v1 16, MountainCar-v0 16" in text
