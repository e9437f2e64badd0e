"""The ``fastrl`` command package: every command group's --help lists the flags generated from its
config dataclass (a new field appears with no change to the CLI), nested configs' fields are flags
that change only their own field, bad flag values are clear errors naming them, and the RLHF demo
writes metrics.csv with the logged columns."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys

import pytest
import torch

from fastrl import cli
from fastrl.algos import PPO, PPOConfig
from fastrl.rlhf import demo


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare word runs


def spelled(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.fixture
def no_demo_run(monkeypatch):
    """Replaces the demo itself, keeping the config it was called with."""
    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg: calls.append(cfg) or {"seconds": 0.0})
    return calls


def test_every_command_group_is_listed(capsys):
    text = help_text(capsys)
    for command in ("train", "eval", "rlhf", "export", "info"):
        assert command in text


def test_train_help_lists_every_config_field_with_its_docstring(capsys):
    text = help_text(capsys, "train", "ppo")
    for f in dataclasses.fields(PPOConfig):
        assert ("--env" if f.name == "env_id" else spelled(f.name)) in text
    assert "--total-steps INT environment steps to train for (summed over all envs) (default: 100000" in text


def test_rlhf_help_lists_every_demo_field_and_every_nested_field(capsys):
    text = help_text(capsys, "rlhf", "demo")
    cfg = demo.DemoConfig()
    nested = 0
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            for g in dataclasses.fields(value):
                assert f"--{f.name}-{g.name.replace('_', '-')}" in text
                nested += 1
        else:
            assert spelled(f.name) in text
    assert nested >= 30  # model, reward, ppo and grpo: every field, not 4 of them
    # the docstring is the help, and a nested default is the demo's (RLHFPPOConfig's own is 1e-4)
    assert "Prompts sampled twice and labeled by the hidden rule" in text
    assert "--ppo-learning-rate" in text and "(default: 0.001" in text.split("--ppo-learning-rate")[1]


@pytest.mark.parametrize("algo", ["ppo", "grpo", "rloo", "reinforce_pp", "dpo"])
def test_rlhf_train_help_lists_every_trainer_config_field(capsys, algo):
    from fastrl.rlhf import DPOConfig, GRPOConfig, RLHFPPOConfig

    config = {"ppo": RLHFPPOConfig, "dpo": DPOConfig}.get(algo, GRPOConfig)
    text = help_text(capsys, "rlhf", "train", algo)
    for f in dataclasses.fields(config):
        assert spelled(f.name) in text
    for option in ("--config RUN.toml", "--resume DIR", "--steps", "--checkpoint-every K", "--out"):
        assert option in text
    if algo == "dpo":
        assert "--beta FLOAT beta: strength of the implicit KL to the reference" in text


def test_a_new_config_field_is_a_flag_without_touching_the_cli(tmp_path, capsys, monkeypatch, no_demo_run):
    @dataclasses.dataclass
    class WithWarmup(PPOConfig):
        warmup_steps: int = 0
        """Steps of linear learning-rate warm-up."""

    monkeypatch.setattr(PPO, "Config", WithWarmup)
    text = help_text(capsys, "train", "ppo")
    assert "--warmup-steps INT Steps of linear learning-rate warm-up. (default: 0)" in text

    @dataclasses.dataclass
    class WithTemperature(demo.DemoConfig):
        eval_temperature: float = 1.0
        """Sampling temperature of the evaluation."""

    monkeypatch.setattr(demo, "DemoConfig", WithTemperature)
    text = help_text(capsys, "rlhf", "demo")
    assert "--eval-temperature FLOAT Sampling temperature of the evaluation. (default: 1.0)" in text
    assert cli.main(["rlhf", "demo", "--eval-temperature", "0.5", "--out", str(tmp_path / "run")]) == 0
    assert no_demo_run[0].eval_temperature == 0.5


def test_nested_flags_change_only_their_field(tmp_path, no_demo_run):
    out = str(tmp_path / "run")
    argv = ["rlhf", "demo", "--algo", "grpo", "--out", out, "--ppo-batch-size", "8", "--reward-epochs", "2",
            "--model-n-layer", "1", "--grpo-scale-rewards", "--no-grpo-scale-rewards", "--iterations", "7"]
    assert cli.main(argv) == 0
    (cfg,) = no_demo_run
    default = demo.DemoConfig()
    assert (cfg.algo, cfg.out, cfg.iterations) == ("grpo", out, 7)
    assert (cfg.ppo.batch_size, cfg.reward.epochs, cfg.model.n_layer) == (8, 2, 1)
    assert cfg.grpo.scale_rewards is False
    # every other field keeps the demo's default (not the nested class's own default)
    assert cfg.ppo.learning_rate == default.ppo.learning_rate == 1e-3
    assert cfg.reward.learning_rate == default.reward.learning_rate
    assert (cfg.model.n_embd, cfg.model.block_size) == (default.model.n_embd, default.model.block_size)
    assert cfg.sft_steps == default.sft_steps and cfg.grpo.group_size == default.grpo.group_size


def test_an_optional_field_takes_none(tmp_path, no_demo_run):
    assert demo.DemoConfig().ppo.target_kl is not None and demo.DemoConfig().cpu_threads is not None
    argv = ["rlhf", "demo", "--out", str(tmp_path / "run"), "--ppo-target-kl", "none", "--cpu-threads", "None",
            "--ppo-value-clip", "0.5"]
    assert cli.main(argv) == 0
    (cfg,) = no_demo_run
    assert cfg.ppo.target_kl is None and cfg.cpu_threads is None and cfg.ppo.value_clip == 0.5


@pytest.mark.parametrize(("argv", "names"), [
    (["rlhf", "demo", "--ppo-batch-size", "many"], ["--ppo-batch-size", "invalid int value: 'many'"]),
    (["rlhf", "demo", "--algo", "dqn"], ["--algo", "invalid choice: 'dqn'"]),
    (["train", "ppo", "--num-envs", "four"], ["--num-envs", "invalid int value: 'four'"]),
    (["train", "ppo", "--target-return", "high"], ["--target-return", "invalid float value: 'high'"]),
    (["train", "ppo", "--env-kwargs", "[1]"], ["--env-kwargs must be a JSON object"]),
])  # fmt: skip
def test_a_value_of_the_wrong_type_is_an_error_naming_the_flag(capsys, no_demo_run, argv, names):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for name in names:
        assert name in err, err
    assert no_demo_run == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--ppo-batch-size", "0"], "RLHFPPOConfig.batch_size must be >= 1, got 0"),
    (["--reward-eval-fraction", "1.5"], "RewardModelConfig.eval_fraction must be"),
    (["--iterations", "0"], "DemoConfig.iterations must be >= 1, got 0"),
    (["--model-block-size", "8"], "DemoConfig.model.block_size must be >= 21"),
    (["--sft-lr", "0.1"], "--sft-lr was renamed --sft-learning-rate: use --sft-learning-rate"),
    (["--ppo-lr", "0.1"], "--ppo-lr was renamed --ppo-learning-rate: use --ppo-learning-rate"),
])  # fmt: skip
def test_a_value_out_of_range_is_one_line_naming_the_field(tmp_path, capsys, no_demo_run, argv, message):
    assert cli.main(["rlhf", "demo", *argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrl rlhf demo: ") and err.count("\n") == 1, err
    assert message in err, err
    assert no_demo_run == [] and not (tmp_path / "run").exists()


def test_eval_export_and_info_help(capsys):
    text = help_text(capsys, "eval")  # flags generated from EvalOptions
    assert "checkpoint" in text and "--episodes INT Episodes to run. (default: 100; > 0)" in text
    assert "--seed INT|none Evaluation seed" in text and "--device STR|none" in text
    assert all(flag in help_text(capsys, "export") for flag in ("checkpoint", "--out"))
    assert help_text(capsys, "info").startswith("usage: fastrl info [-h]")


def test_the_demo_writes_the_logged_metrics(tmp_path, capsys):
    threads = torch.get_num_threads()  # the demo sets its own thread count
    out = tmp_path / "run"
    argv = ["rlhf", "demo", "--out", str(out), "--sft-examples", "100", "--sft-steps", "2",
            "--preference-prompts", "200", "--reward-epochs", "1", "--rl-prompts", "40", "--iterations", "3",
            "--eval-prompts", "8", "--log-every", "2", "--ppo-batch-size", "8", "--ppo-num-minibatches", "2"]
    try:
        assert cli.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    assert f"metrics: {out}/metrics.csv" in capsys.readouterr().out
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    # one row per RL step, the step and wall time first, then the trainer's metrics and the hidden score
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert header[:2] == ["step", "wall_time"] and {"score", "kl", "hidden_score"} <= set(header[2:])
    assert "episodic_return" not in header
    for row in rows:
        values = {k: float(v) for k, v in row.items()}  # every cell a number: nothing left empty
        assert 0 <= values["hidden_score"] <= 1 and values["wall_time"] >= 0
    wall = [float(r["wall_time"]) for r in rows]
    assert wall == sorted(wall)
    for name in ("training.png", "summary.json", "policy.pt", "reward_model.pt"):
        assert (out / name).stat().st_size > 0
    if (out / "tb").exists():  # tensorboard installed: the same scalars there
        assert any((out / "tb").iterdir())


def test_python_dash_m_and_the_console_script_resolve():
    run = subprocess.run([sys.executable, "-m", "fastrl", "rlhf", "demo", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "--ppo-batch-size" in run.stdout, run.stderr
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "fastrl"]
    assert script.load() is cli.main
