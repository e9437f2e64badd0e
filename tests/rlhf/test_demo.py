"""The demo task: the hidden rule on tensors matches it on strings; the pipeline's files; and the
learning test (slow): reward model >= 90% held-out accuracy, PPO and GRPO close at least half of
the gap between the SFT model's hidden score and the best achievable, with bounded KL."""

import copy
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


@pytest.mark.parametrize(("algo", "eval_fraction"), [("ppo", 0.1), ("grpo", 0.0)])
def test_demo_pipeline_writes_metrics_plot_and_models(tmp_path, algo, eval_fraction):
    cfg = demo.DemoConfig(
        algo=algo, out=str(tmp_path), sft_examples=200, sft_steps=3, preference_prompts=300,
        reward=demo.RewardModelConfig(epochs=1, eval_fraction=eval_fraction), rl_prompts=50, iterations=3,
        eval_prompts=16, log_every=2, cpu_threads=None,
    )  # fmt: skip
    summary = demo.run_demo(cfg)
    # no held-out pairs, no held-out accuracy (was a KeyError after the whole run)
    accuracy = summary["reward_model_eval_accuracy"]
    assert accuracy is None if eval_fraction == 0 else 0 <= accuracy <= 1
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,wall_time,score,kl,") and "hidden_score" in rows[0]
    assert len(rows) == 1 + cfg.iterations
    for name in ("training.png", "policy.pt", "reward_model.pt", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert 0 <= summary["final_hidden_score"] <= 1 and summary["final_kl"] >= 0


# Targets of the demo at its default settings (measured figures in docs/RLHF.md).
MIN_RM_ACCURACY = 0.90
MIN_GAP_CLOSED = 0.5
MAX_KL = 15.0  # nats per response, mean over the evaluation prompts


@pytest.mark.slow
def test_demo_learns(tmp_path):
    cfg = demo.DemoConfig(out=str(tmp_path))
    prep = demo.prepare(cfg)
    assert prep.reward_metrics["eval_accuracy"] >= MIN_RM_ACCURACY
    for algo in ("ppo", "grpo"):
        summary = demo.run_rl(replace(cfg, algo=algo, out=str(tmp_path / algo)), copy.deepcopy(prep))
        assert summary["gap_closed"] >= MIN_GAP_CLOSED, summary
        assert summary["final_kl"] <= MAX_KL, summary
