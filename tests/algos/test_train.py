"""Every algorithm trains on every native env it supports, the CLI works end to end (a resumed
run writes the rows of one straight run), and (marked slow) the learning targets are reached on
the median of three seeds. Exact resume from checkpoints: test_resume_exact.py."""

import math
import statistics

import pytest

from fastrl import _native, cli
from fastrl.algos import ALGOS, PPO, PPOConfig
from fastrl.algos.defaults import tuned_defaults
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


def test_cli_train_eval_resume(tmp_path, capsys):
    common = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "64", "--quiet", "--no-anneal-lr",
              "--hidden", "32", "32"]
    out = tmp_path / "run"
    rc = cli.main(["train", "ppo", *common, "--total-steps", "1024", "--out", str(out), "--final-eval", "3"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "eval: 3 episodes, return" in text
    assert {p.name for p in out.iterdir()} >= {"metrics.csv", "learning_curve.png", "checkpoint.pt", "tb"}
    assert cli.main(["eval", str(out / "checkpoint.pt"), "--episodes", "2"]) == 0
    assert "eval: 2 episodes" in capsys.readouterr().out
    first_rows = (out / "metrics.csv").read_text().splitlines()
    assert cli.main(["train", "ppo", "--resume", str(out), "--total-steps", "2048", "--quiet",
                     "--final-eval", "1"]) == 0
    # The same rows as one run of 2048 steps: the resumed run continued the state, not a fresh start.
    straight = tmp_path / "straight"
    assert cli.main(["train", "ppo", *common, "--total-steps", "2048", "--out", str(straight),
                     "--final-eval", "1"]) == 0
    resumed_rows = (out / "metrics.csv").read_text().splitlines()
    assert without_wall_time(resumed_rows) == without_wall_time((straight / "metrics.csv").read_text().splitlines())
    assert len(resumed_rows) == 1 + 2048 // 256
    # the rows up to the checkpoint are kept as written (wall times too): a run that started over would rewrite them
    assert resumed_rows[:len(first_rows)] == first_rows


def without_wall_time(lines: list[str]) -> list[list[str]]:
    rows = [line.split(",") for line in lines]
    column = rows[0].index("wall_time")
    return [row[:column] + row[column + 1:] for row in rows]


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

# Each learning test trains the tuned config on three seeds and asserts that the median meets the
# threshold: one unlucky seed may miss it, a trainer that learns worse than it should cannot pass.
SEEDS = (0, 1, 2)


def median_over_seeds(train_and_score) -> tuple[float, ...]:
    """``train_and_score(seed)`` gives a tuple of scores per seed: the median of each over the seeds."""
    scores = [train_and_score(seed) for seed in SEEDS]
    return tuple(statistics.median(column) for column in zip(*scores))


def mean(xs) -> float:
    return sum(xs) / len(xs)


@pytest.mark.slow
def test_ppo_solves_cartpole():
    def train_and_score(seed):
        t = PPO(PPOConfig(**tuned_defaults("ppo", "CartPole-v1"), seed=seed))
        return t.train()["return_last100"], mean(t.evaluate(100))

    last100, greedy = median_over_seeds(train_and_score)
    assert last100 >= 475 and greedy >= 475, f"medians over seeds {SEEDS}: last 100 {last100}, greedy {greedy}"


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "env_id", "episodes", "threshold"), [
    ("dqn", "CartPole-v1", 100, 475),  # solved
    ("ppo", "Pendulum-v1", 20, -200),
])  # fmt: skip
def test_greedy_return_after_training(algo, env_id, episodes, threshold):
    def train_and_score(seed):
        t = ALGOS[algo](ALGOS[algo].Config(**tuned_defaults(algo, env_id), seed=seed))
        t.train()
        return (mean(t.evaluate(episodes)),)

    (greedy,) = median_over_seeds(train_and_score)
    assert greedy >= threshold, f"{algo} on {env_id}: median greedy return over seeds {SEEDS}: {greedy}"


def test_cli_info_reports_the_build(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "backend" in out
    for op in ("gae", "ppo_loss", "envs"):
        assert op in out
    if _native._C is not None:
        assert "CPU kernels: " + ("AVX2" if _native.build_info["avx2"] else "baseline") in out



@pytest.mark.parametrize("onednn", [True, False])
def test_cli_info_says_which_gemms_the_linear_layers_use(capsys, monkeypatch, onednn):
    from fastrl.nn import linear

    monkeypatch.setattr(linear, "ONEDNN", onednn)
    assert cli.main(["info"]) == 0
    gemms = "oneDNN" if onednn else "torch"
    assert f"fastrl.nn.Linear in float32 on the CPU: {gemms}'s GEMMs" in capsys.readouterr().out
