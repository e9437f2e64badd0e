"""Every RLHF config is validated at construction, and again when a trainer starts, with errors
naming the config and the field; the ``fastrl rlhf`` CLI turns them into one line and exit code 2."""

import math
import re

import numpy as np
import pytest
import torch

from fastrl import cli
from fastrl.nn.gpt import GPTConfig
from fastrl.rlhf import demo
from fastrl.rlhf.data import Preference
from fastrl.rlhf.demo import DemoConfig
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig
from fastrl.rlhf.reward_model import RewardModelConfig, train_reward_model
from tests.rlhf._tiny import CFG, PROMPTS, TOK, same_state, snapshot, tiny_models

BAD = [
    # the examples from the hardening issue (12)
    (RewardModelConfig, "eval_fraction", -0.5, ValueError,
     r"RewardModelConfig.eval_fraction must be in \[0, 1\), got -0.5"),
    (RewardModelConfig, "eval_fraction", 1.0, ValueError, r"eval_fraction must be in \[0, 1\), got 1"),
    (RewardModelConfig, "epochs", 0, ValueError, r"RewardModelConfig.epochs must be >= 1, got 0"),
    (RewardModelConfig, "batch_size", 0, ValueError, r"RewardModelConfig.batch_size must be >= 1, got 0"),
    (RLHFPPOConfig, "max_new_tokens", 0, ValueError, r"RLHFPPOConfig.max_new_tokens must be >= 1, got 0"),
    (GRPOConfig, "max_new_tokens", 0, ValueError, r"GRPOConfig.max_new_tokens must be >= 1, got 0"),
    # learning rates: finite and > 0
    (RewardModelConfig, "learning_rate", 0.0, ValueError, r"RewardModelConfig.learning_rate must be > 0, got 0.0"),
    (RewardModelConfig, "learning_rate", math.nan, ValueError,
     r"RewardModelConfig.learning_rate must be a finite number, got nan"),
    (RLHFPPOConfig, "learning_rate", math.inf, ValueError,
     r"RLHFPPOConfig.learning_rate must be a finite number, got inf"),
    (RLHFPPOConfig, "critic_learning_rate", -1e-4, ValueError,
     r"RLHFPPOConfig.critic_learning_rate must be > 0, got -0.0001"),
    (GRPOConfig, "learning_rate", 1e400, ValueError, r"GRPOConfig.learning_rate must be a finite number, got inf"),
    (DemoConfig, "sft_learning_rate", 0, ValueError, r"DemoConfig.sft_learning_rate must be > 0, got 0.0"),
    # types
    (RewardModelConfig, "learning_rate", "fast", TypeError,
     r"RewardModelConfig.learning_rate must be a number, got 'fast' \(str\)"),
    (RewardModelConfig, "epochs", 2.5, TypeError, r"RewardModelConfig.epochs must be an int, got 2.5 \(float\)"),
    (RewardModelConfig, "batch_size", True, TypeError, r"batch_size must be an int, got True \(bool\)"),
    (RewardModelConfig, "seed", "0", TypeError, r"RewardModelConfig.seed must be an int, got '0' \(str\)"),
    (RLHFPPOConfig, "epochs", None, TypeError, r"RLHFPPOConfig.epochs must be an int, got None \(NoneType\)"),
    (RLHFPPOConfig, "gamma", "0.99", TypeError, r"RLHFPPOConfig.gamma must be a number, got .0.99. \(str\)"),
    (GRPOConfig, "scale_rewards", "no", TypeError, r"GRPOConfig.scale_rewards must be true or false, got 'no' \(str\)"),
    # ranges of the other fields
    (RewardModelConfig, "weight_decay", -0.1, ValueError, r"weight_decay must be >= 0, got -0.1"),
    (RewardModelConfig, "seed", -1, ValueError, r"RewardModelConfig.seed must be in \[0, 2\*\*63\), got -1"),
    (RLHFPPOConfig, "seed", 2**63, ValueError, r"RLHFPPOConfig.seed must be in \[0, 2\*\*63\)"),
    (RLHFPPOConfig, "batch_size", 0, ValueError, r"RLHFPPOConfig.batch_size must be >= 1"),
    (RLHFPPOConfig, "num_minibatches", -2, ValueError, r"RLHFPPOConfig.num_minibatches must be >= 1"),
    (RLHFPPOConfig, "temperature", 0.0, ValueError, r"RLHFPPOConfig.temperature must be > 0"),
    (RLHFPPOConfig, "clip_low", -0.2, ValueError, r"RLHFPPOConfig.clip_low must be >= 0"),
    (RLHFPPOConfig, "value_clip", -1.0, ValueError, r"RLHFPPOConfig.value_clip must be >= 0"),
    (RLHFPPOConfig, "value_clip", "none", TypeError, r"RLHFPPOConfig.value_clip must be a number or None"),
    (RLHFPPOConfig, "gamma", 1.5, ValueError, r"RLHFPPOConfig.gamma must be in \[0, 1\], got 1.5"),
    (RLHFPPOConfig, "gae_lambda", -0.1, ValueError, r"RLHFPPOConfig.gae_lambda must be in \[0, 1\]"),
    (RLHFPPOConfig, "kl_coef", -0.1, ValueError, r"RLHFPPOConfig.kl_coef must be >= 0"),
    (RLHFPPOConfig, "target_kl", 0.0, ValueError, r"RLHFPPOConfig.target_kl must be > 0"),
    (RLHFPPOConfig, "kl_horizon", 0, ValueError, r"RLHFPPOConfig.kl_horizon must be >= 1"),
    (RLHFPPOConfig, "entropy_coef", math.nan, ValueError, r"RLHFPPOConfig.entropy_coef must be a finite number"),
    (RLHFPPOConfig, "max_grad_norm", 0.0, ValueError, r"RLHFPPOConfig.max_grad_norm must be > 0"),
    (RLHFPPOConfig, "max_grad_norm", math.nan, ValueError, r"RLHFPPOConfig.max_grad_norm must be a finite number"),
    (GRPOConfig, "group_size", 1, ValueError, r"GRPOConfig.group_size must be >= 2, got 1"),
    (GRPOConfig, "prompts_per_step", 0, ValueError, r"GRPOConfig.prompts_per_step must be >= 1"),
    (GRPOConfig, "epochs", 0, ValueError, r"GRPOConfig.epochs must be >= 1"),
    (GRPOConfig, "clip_high", -0.3, ValueError, r"GRPOConfig.clip_high must be >= 0"),
    (GRPOConfig, "kl_coef", math.inf, ValueError, r"GRPOConfig.kl_coef must be a finite number"),
    (GRPOConfig, "normalize", "sum", ValueError, r"GRPOConfig.normalize must be one of 'token_mean', "),
    (GRPOConfig, "seed", -5, ValueError, r"GRPOConfig.seed must be in \[0, 2\*\*63\)"),
    (DemoConfig, "algo", "dqn", ValueError,
     r"DemoConfig.algo must be one of 'ppo', 'grpo', 'rloo', 'reinforce_pp', 'gspo', 'cispo', 'dpo', got 'dqn'"),
    (DemoConfig, "device", "tpu", ValueError, r"DemoConfig.device must be cpu or cuda, got 'tpu'"),
    (DemoConfig, "out", None, TypeError, r"DemoConfig.out must be a string, got None"),
    (DemoConfig, "out", "", ValueError, r"DemoConfig.out must be a directory path"),
    (DemoConfig, "seed", -1, ValueError, r"DemoConfig.seed must be in \[0, 2\*\*63\), got -1"),
    (DemoConfig, "cpu_threads", 0, ValueError, r"DemoConfig.cpu_threads must be >= 1"),
    (DemoConfig, "iterations", 0, ValueError, r"DemoConfig.iterations must be >= 1"),
    (DemoConfig, "sft_steps", 0, ValueError, r"DemoConfig.sft_steps must be >= 1"),
    (DemoConfig, "log_every", 0, ValueError, r"DemoConfig.log_every must be >= 1"),
    (DemoConfig, "max_new_tokens", 0, ValueError, r"DemoConfig.max_new_tokens must be >= 1"),
    (DemoConfig, "max_new_tokens", 30, ValueError, r"DemoConfig.model.block_size must be >= 37 .* got 24"),
    (DemoConfig, "reward", {"epochs": 1}, TypeError, r"DemoConfig.reward must be a RewardModelConfig, got dict"),
    (DemoConfig, "model", GPTConfig(vocab_size=99), ValueError, r"DemoConfig.model.vocab_size must be 15"),
    (GPTConfig, "n_head", 3, ValueError, r"GPTConfig.n_head \(3\) must divide n_embd \(64\)"),
    (GPTConfig, "block_size", 0, ValueError, r"GPTConfig.block_size must be >= 1, got 0"),
    (GPTConfig, "n_layer", 1.0, TypeError, r"GPTConfig.n_layer must be an int, got 1.0 \(float\)"),
]  # fmt: skip


def _make(cls, **kwargs):
    return cls(**({"vocab_size": 13} if cls is GPTConfig else {}), **kwargs)


@pytest.mark.parametrize(("cls", "field", "value", "error", "message"), BAD,
                         ids=[f"{c.__name__}.{f}={v!r}"[:60] for c, f, v, *_ in BAD])  # fmt: skip
def test_bad_fields_are_named_at_construction(cls, field, value, error, message):
    with pytest.raises(error, match=message):
        _make(cls, **{field: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_demo_config_refuses_cuda_without_cuda():
    with pytest.raises(ValueError, match=r"DemoConfig.device='cuda' but CUDA is not available"):
        DemoConfig(device="cuda")


def test_good_configs_are_kept_and_numpy_numbers_become_python_numbers():
    for cls in (RewardModelConfig, RLHFPPOConfig, GRPOConfig, DemoConfig):
        _make(cls)  # the defaults are valid
    cfg = RewardModelConfig(epochs=np.int64(2), batch_size=np.int32(8), learning_rate=np.float32(0.5),
                            eval_fraction=0)
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.eval_fraction) == (2, 8, 0.5, 0.0)
    assert type(cfg.epochs) is int and type(cfg.learning_rate) is float
    ppo = RLHFPPOConfig(value_clip=None, target_kl=None, max_grad_norm=math.inf, entropy_coef=-0.01, clip_low=0)
    assert ppo.value_clip is None and ppo.target_kl is None and ppo.max_grad_norm == math.inf
    assert GRPOConfig(clip_high=None, kl_coef=0).clip_high is None


def _pairs(n=12):
    return [Preference("ab=", "a" * (1 + i % 3), "b" * (1 + i % 2), source=f"pair {i}") for i in range(n)]


def test_trainers_validate_their_config_again_before_any_work():
    """A field changed after construction is caught when the trainer starts, not mid-run."""
    policy, reward_model = tiny_models()
    cfg = RewardModelConfig()
    cfg.epochs = 0  # was an UnboundLocalError after the split
    start = snapshot(reward_model)
    with pytest.raises(ValueError, match=r"RewardModelConfig.epochs must be >= 1, got 0"):
        train_reward_model(reward_model, _pairs(), TOK, cfg)
    assert same_state(reward_model, start)
    cfg = RewardModelConfig()
    cfg.eval_fraction = -0.5  # reported eval_pairs=-4
    with pytest.raises(ValueError, match=r"RewardModelConfig.eval_fraction must be in \[0, 1\)"):
        train_reward_model(reward_model, _pairs(), TOK, cfg)
    with pytest.raises(TypeError, match=r"cfg must be a RewardModelConfig, got dict"):
        train_reward_model(reward_model, _pairs(), TOK, {"epochs": 1})
    ppo = RLHFPPOConfig()
    ppo.batch_size = 0
    with pytest.raises(ValueError, match=r"RLHFPPOConfig.batch_size must be >= 1, got 0"):
        PPOTrainer(policy, reward_model, TOK, ppo)
    grpo = GRPOConfig()
    grpo.max_new_tokens = 0
    with pytest.raises(ValueError, match=r"GRPOConfig.max_new_tokens must be >= 1, got 0"):
        GRPOTrainer(policy, reward_model, TOK, grpo)
    with pytest.raises(TypeError, match=r"cfg must be a GRPOConfig, got RLHFPPOConfig"):
        GRPOTrainer(policy, reward_model, TOK, RLHFPPOConfig())
    bad_demo = DemoConfig()
    bad_demo.reward.batch_size = 0  # a nested config changed after construction
    with pytest.raises(ValueError, match=r"RewardModelConfig.batch_size must be >= 1"):
        demo.run_demo(bad_demo)


def test_train_checks_iterations_and_prompt_lengths_before_any_step():
    policy, reward_model = tiny_models()
    trainer = PPOTrainer(policy, reward_model, TOK, RLHFPPOConfig(batch_size=4, max_new_tokens=12))
    start = snapshot(policy)
    with pytest.raises(ValueError, match=r"iterations must be an int >= 0, got -1"):
        trainer.train(PROMPTS, iterations=-1)
    with pytest.raises(ValueError, match=r"iterations must be an int >= 0, got 2.5"):
        trainer.train(PROMPTS, iterations=2.5)
    # context 16 with 12 new tokens leaves room for prompts of 4 tokens: prompt 2 has 5
    with pytest.raises(ValueError, match=r"prompt 2 has 5 tokens; with max_new_tokens=12 .*context of 16 "
                                         r"\(prompts may have at most 4 tokens\)"):
        trainer.train(["ab=", "c=", "abcd=", "b="], iterations=1)
    with pytest.raises(ValueError, match=r"prompt 1: token id 7 at position 0 is outside the vocabulary \[0, 7\)"):
        trainer.train([torch.tensor([2, 3]), torch.tensor([7])], iterations=1)
    assert CFG.vocab_size == TOK.vocab_size == 7
    assert same_state(policy, start)


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def no_demo_run(monkeypatch):
    """Replaces the demo itself: the CLI must stop before it for a bad setting."""
    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg: calls.append(cfg) or {"seconds": 0.0})
    return calls


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "-1"], r"DemoConfig.seed must be in \[0, 2\*\*63\), got -1"),
    (["--seed", str(2**64)], r"DemoConfig.seed must be in \[0, 2\*\*63\)"),
    (["--out", "{file}/run"], r"Not a directory"),
    (["--out", "{file}"], r"file is not a directory"),
])  # fmt: skip
def test_cli_bad_settings_are_one_line_and_exit_code_2(tmp_path, capsys, no_demo_run, args, message):
    (tmp_path / "file").write_text("not a directory")
    args = [a.replace("{file}", str(tmp_path / "file")) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    assert cli.main(["rlhf", "demo", *args, *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastrl rlhf demo: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert no_demo_run == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cli_cuda_without_cuda(tmp_path, capsys, no_demo_run):
    assert cli.main(["rlhf", "demo", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("fastrl rlhf demo: DemoConfig.device='cuda' but CUDA is not available to "
                                       f"this torch ({torch.__version__})\n")
    assert no_demo_run == []


def test_cli_good_settings_run_the_demo(tmp_path, capsys, no_demo_run):
    assert cli.main(["rlhf", "demo", "--seed", "3", "--out", str(tmp_path / "run")]) == 0
    assert [(c.seed, c.out) for c in no_demo_run] == [(3, str(tmp_path / "run"))]


def test_cli_never_replaces_an_earlier_run(tmp_path, capsys, monkeypatch):
    """A second demo into the same --out is refused (files untouched) unless --overwrite."""
    def fake_run(cfg):
        (tmp_path / "run" / "metrics.csv").write_text(f"seed\n{cfg.seed}\n")
        return {"seconds": 0.0}

    monkeypatch.setattr(demo, "run_demo", fake_run)
    run = ["rlhf", "demo", "--out", str(tmp_path / "run")]
    assert cli.main([*run, "--seed", "1"]) == 0
    assert cli.main([*run, "--seed", "2"]) == 2
    assert "already holds a run (metrics.csv)" in capsys.readouterr().err
    assert (tmp_path / "run" / "metrics.csv").read_text() == "seed\n1\n"
    assert cli.main([*run, "--seed", "2", "--overwrite"]) == 0
    assert (tmp_path / "run" / "metrics.csv").read_text() == "seed\n2\n"
