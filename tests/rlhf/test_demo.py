"""The demo task: the hidden rule on tensors matches it on strings; the pipeline's files for every
algorithm; and the learning test (slow): reward model >= 90% held-out accuracy, PPO, GRPO, RLOO,
REINFORCE++, GSPO, CISPO and DPO close at least half of the gap between the SFT model's hidden score and the best
achievable, with bounded KL."""

import copy
import math
import random
from dataclasses import replace

import pytest
import torch

from fastrl.nn.gpt import GPT, generate
from fastrl.rlhf import demo, synthetic
from fastrl.rlhf.data import encode_prompts


def test_hidden_scores_on_tensors_match_the_rule_on_strings():
    torch.manual_seed(0)
    cfg = demo.DemoConfig()
    model = GPT(cfg.model)
    texts = synthetic.prompts(32, seed=3)
    ids, mask = encode_prompts(texts, synthetic.TOKENIZER)
    gen = generate(model, ids, mask, max_new_tokens=10, stop_token=synthetic.TOKENIZER.eos_id,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    responses = [synthetic.TOKENIZER.decode(r[m]) for r, m in zip(gen.response, gen.response_mask)]
    expected = [synthetic.hidden_score(p, r) for p, r in zip(texts, responses)]
    torch.testing.assert_close(synthetic.hidden_scores(gen), torch.tensor(expected))
    assert synthetic.hidden_score("ab=", "aab=") == 0.75 and synthetic.hidden_score("ab=", "") == 0.0


def test_sft_corpus_follows_the_language():
    rng = random.Random(0)
    for _ in range(50):
        prompt = synthetic.sample_prompt(rng)
        assert prompt.endswith("=") and 3 <= len(set(prompt[:-1])) == len(prompt) - 1 <= 5
        assert 4 <= len(synthetic.sft_response(prompt, rng)) <= 10


@pytest.mark.parametrize(("algo", "eval_fraction"), [("ppo", 0.1), ("grpo", 0.0), ("rloo", 0.1),
                                                    ("reinforce_pp", 0.1), ("dpo", 0.1)])  # fmt: skip
def test_demo_pipeline_writes_metrics_plot_and_models(tmp_path, algo, eval_fraction):
    cfg = demo.DemoConfig(
        algo=algo, out=str(tmp_path), sft_examples=200, sft_steps=3, preference_prompts=300,
        reward=demo.RewardModelConfig(epochs=1, eval_fraction=eval_fraction), rl_prompts=50, iterations=3,
        eval_prompts=16, log_every=2, cpu_threads=None, dpo=demo.DPOConfig(epochs=2, batch_size=64),
    )  # fmt: skip
    summary = demo.run_demo(cfg)
    # no held-out pairs (or no reward model: DPO), no held-out accuracy (was a KeyError after the whole run)
    accuracy = summary["reward_model_eval_accuracy"]
    assert accuracy is None if eval_fraction == 0 or algo == "dpo" else 0 <= accuracy <= 1
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    if algo == "dpo":  # two passes over the pairs, no reward model
        assert rows[0].startswith("step,wall_time,loss,accuracy,margin")
        assert len(rows) == 1 + 2 * -(-summary["preference_pairs"] // 64) == 1 + summary["steps"]
        assert not (tmp_path / "reward_model.pt").exists()
    else:
        assert rows[0].startswith("step,wall_time,score,kl,") and "hidden_score" in rows[0]
        assert len(rows) == 1 + cfg.iterations
        assert (tmp_path / "reward_model.pt").stat().st_size > 0
    for name in ("training.png", "policy.pt", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert 0 <= summary["final_hidden_score"] <= 1
    # a sampled estimate of the KL: a few DPO steps leave it near 0, where the estimate may be negative
    assert summary["final_kl"] >= 0 if algo != "dpo" else math.isfinite(summary["final_kl"])
    assert summary["gap_closed"] == pytest.approx((summary["final_hidden_score"] - summary["sft_hidden_score"])
                                                  / (1 - summary["sft_hidden_score"]))  # fmt: skip


def test_rloo_and_reinforce_pp_are_the_grpo_trainer_with_that_estimator():
    cfg = demo.DemoConfig(sft_examples=50, sft_steps=1, preference_prompts=50, cpu_threads=None)
    prep = demo.Prepared(GPT(cfg.model), [], demo.RewardModel(cfg.model), {"pairs": 0}, 0.5, 0.0)
    for algo in ("grpo", "rloo", "reinforce_pp"):
        trainer, steps = demo.make_trainer(replace(cfg, algo=algo), prep)
        assert type(trainer).__name__ == "GRPOTrainer" and steps == cfg.iterations
        assert trainer.cfg == replace(cfg.grpo, advantage_estimator=algo, max_new_tokens=cfg.max_new_tokens)


def test_gspo_and_cispo_are_the_grpo_trainer_with_that_loss():
    cfg = demo.DemoConfig(sft_examples=50, sft_steps=1, preference_prompts=50, cpu_threads=None)
    prep = demo.Prepared(GPT(cfg.model), [], demo.RewardModel(cfg.model), {"pairs": 0}, 0.5, 0.0)
    for algo, loss in (("gspo", dict(importance_level="sequence")), ("cispo", dict(policy_loss="cispo"))):
        trainer, steps = demo.make_trainer(replace(cfg, algo=algo), prep)
        assert type(trainer).__name__ == "GRPOTrainer" and steps == cfg.iterations
        assert trainer.cfg == replace(cfg.grpo, advantage_estimator="grpo", max_new_tokens=cfg.max_new_tokens, **loss)


# Targets of the demo at its default settings (measured figures in docs/RLHF.md).
MIN_RM_ACCURACY = 0.90
MIN_GAP_CLOSED = 0.5
MAX_KL = 15.0  # nats per response, mean over the evaluation prompts


@pytest.mark.slow
def test_demo_learns(tmp_path):
    cfg = demo.DemoConfig(out=str(tmp_path))
    prep = demo.prepare(cfg)
    assert prep.reward_metrics["eval_accuracy"] >= MIN_RM_ACCURACY
    for algo in demo.ALGOS:
        summary = demo.run_rl(replace(cfg, algo=algo, out=str(tmp_path / algo)), copy.deepcopy(prep))
        assert summary["gap_closed"] >= MIN_GAP_CLOSED, summary
        assert summary["final_kl"] <= MAX_KL, summary
