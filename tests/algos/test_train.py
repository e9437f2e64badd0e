"""Every algorithm trains on every native env it supports, checkpoints resume exactly, the CLI
works end to end, and (marked slow) the learning targets are reached."""

import math

import pytest
import torch

from fastrl import _native, cli
from fastrl.algos import ALGOS, DQN, PPO, DQNConfig, PPOConfig
from fastrl.envs import NATIVE_ENVS

CONTINUOUS = {"Pendulum-v1", "MountainCarContinuous-v0"}
SMOKE = {"ppo": dict(num_envs=4, num_steps=16, num_minibatches=2),
         "a2c": dict(num_envs=4),
         "reinforce": dict(num_envs=4, num_steps=32),
         "dqn": dict(num_envs=4, learning_starts=64, batch_size=16, target_update_every=10)}


@pytest.mark.parametrize("env_id", NATIVE_ENVS)
@pytest.mark.parametrize("algo", ALGOS)
def test_smoke(algo, env_id, tmp_path):
    if algo == "dqn" and env_id in CONTINUOUS:
        pytest.skip("DQN is for discrete actions (tested as a config error)")
    cls = ALGOS[algo]
    trainer = cls(cls.Config(env_id=env_id, total_steps=512, seed=1, **SMOKE[algo]), out_dir=tmp_path)
    summary = trainer.train()
    assert summary["steps"] >= 512
    last = trainer.history[-1]
    assert all(math.isfinite(v) for k, v in last.items() if not k.startswith(("episodic", "return")))
    assert (tmp_path / "metrics.csv").exists() and (tmp_path / "learning_curve.png").exists()
    assert (tmp_path / "checkpoint.pt").exists()
    returns = trainer.evaluate(episodes=2)
    assert len(returns) == 2 and all(math.isfinite(r) for r in returns)


def _run(cls, config, split, tmp_path):
    """Train straight through, and again with a save/restore in the middle: same metrics."""
    straight = cls(config)
    straight.train()
    first = cls(config, out_dir=tmp_path)
    first.train(until_step=split)  # saves the checkpoint, as an interrupted run would have
    resumed = cls.from_checkpoint(tmp_path / "checkpoint.pt")
    resumed.train()
    return straight, first, resumed


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_resume_is_exact(algo, tmp_path):
    if algo == "ppo":
        cfg = PPOConfig(env_id="CartPole-v1", num_envs=4, num_steps=32, total_steps=4 * 32 * 6, seed=3)
        split = 4 * 32 * 3
    else:
        cfg = DQNConfig(env_id="CartPole-v1", num_envs=4, total_steps=4 * 150, learning_starts=100,
                        batch_size=16, target_update_every=20, seed=3)
        split = 4 * 70
    straight, first, resumed = _run(ALGOS[algo], cfg, split, tmp_path)
    assert first.history + resumed.history == straight.history
    for a, b in zip(straight.checkpointed()["q" if algo == "dqn" else "agent"].parameters(),
                    resumed.checkpointed()["q" if algo == "dqn" else "agent"].parameters()):
        assert torch.equal(a, b)


def test_cli_train_eval_resume(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "ppo", "--env", "CartPole-v1", "--total-steps", "1024", "--num-envs", "4",
                   "--num-steps", "64", "--out", str(out), "--quiet", "--final-eval", "3", "--no-anneal-lr",
                   "--hidden", "32", "32"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "eval: 3 episodes, return" in text
    assert {p.name for p in out.iterdir()} >= {"metrics.csv", "learning_curve.png", "checkpoint.pt", "tb"}
    assert cli.main(["eval", str(out / "checkpoint.pt"), "--episodes", "2"]) == 0
    assert "eval: 2 episodes" in capsys.readouterr().out
    assert cli.main(["train", "ppo", "--resume", str(out), "--total-steps", "2048", "--quiet",
                     "--final-eval", "1"]) == 0
    lines = (out / "metrics.csv").read_text().splitlines()
    assert int(float(lines[-1].split(",")[0])) == 2048


def test_cli_config_file_and_errors(tmp_path, capsys):
    cfg = tmp_path / "ppo.toml"
    cfg.write_text('num_envs = 2\nnum_steps = 16\nnum_minibatches = 2\ntotal_steps = 64\n')
    assert cli.main(["train", "ppo", "--config", str(cfg), "--out", str(tmp_path / "r"), "--quiet",
                     "--final-eval", "1"]) == 0
    assert "ppo on CartPole-v1, 2 envs, 64 steps" in capsys.readouterr().out
    # Bad input: one line on stderr, exit code 2, nothing written.
    for argv, match in [
        (["train", "dqn", "--env", "Pendulum-v1", "--out", str(tmp_path / "x")], "DQN needs a discrete action space"),
        (["train", "a2c", "--total-steps", "-1", "--out", str(tmp_path / "y")], "total_steps must be > 0"),
    ]:
        assert cli.main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"no_such_field": 1}')
    assert cli.main(["train", "ppo", "--config", str(bad), "--quiet"]) == 2
    assert "unknown config fields for ppo: ['no_such_field']" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_help_lists_every_field(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "dqn", "--help"])
    text = capsys.readouterr().out
    for flag in ("--env", "--num-envs", "--total-steps", "--seed", "--device", "--out", "--config",
                 "--resume", "--double-dqn", "--n-step", "--tau"):
        assert flag in text


# --------------------------------------------------------------------------- learning (slow)


@pytest.mark.slow
def test_ppo_solves_cartpole():
    from fastrl.algos.defaults import tuned_defaults

    t = PPO(PPOConfig(**tuned_defaults("ppo", "CartPole-v1"), seed=0))
    summary = t.train()
    assert summary["return_last100"] >= 475
    returns = t.evaluate(100)
    assert sum(returns) / len(returns) >= 475


@pytest.mark.slow
def test_dqn_solves_cartpole():
    from fastrl.algos.defaults import tuned_defaults

    t = DQN(DQNConfig(**tuned_defaults("dqn", "CartPole-v1"), seed=0))
    t.train()
    returns = t.evaluate(100)
    assert sum(returns) / len(returns) >= 475


@pytest.mark.slow
def test_ppo_pendulum():
    from fastrl.algos.defaults import tuned_defaults

    t = PPO(PPOConfig(**tuned_defaults("ppo", "Pendulum-v1"), seed=0))
    t.train()
    returns = t.evaluate(20)
    assert sum(returns) / len(returns) >= -200


def test_cli_info_reports_the_build(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "backend" in out
    for op in ("gae", "ppo_loss", "envs"):
        assert op in out
    if _native._C is not None:
        assert "CPU kernels: " + ("AVX2" if _native.build_info["avx2"] else "baseline") in out
