"""GRPO and RLHF-PPO under a 2-process gloo job make the update of one process on the whole batch
(issue 15): the same responses, split by prompt over the ranks with unequal response lengths, give
the same parameters and gradients after the step and the same (global) metrics, for every loss
normalization. The oracle is the trainer on one process holding the whole batch, where no count is
global."""

import csv
import math

import pytest
import torch

from fastrl.nn.gpt import Generation
from fastrl.ops import NORMALIZATIONS
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig
from fastrl.rlhf.rollout import select_rows
from fastrl.utils.checkpoint import CheckpointError
from tests.rlhf._tiny import TOK, tiny_models

from ._launch import run_ranks

PROMPTS, GROUP, PROMPT_LEN, RESPONSE_LEN = 4, 2, 3, 6
# the responses' lengths: rank 0's (the first two prompts' groups) long, rank 1's short, one of them
# empty, so that the ranks' counts of tokens and of non-empty responses differ
LENGTHS = [6, 5, 6, 4, 1, 0, 1, 3]
CASES = {normalize: dict(normalize=normalize) for normalize in NORMALIZATIONS}
# two epochs (the old log-probs from their own pass, ratios off 1 in the second) and REINFORCE++'s
# advantages, whitened over the job's tokens
CASES["epochs-reinforce_pp"] = dict(normalize="token_mean", epochs=2, advantage_estimator="reinforce_pp")
# minibatches: every rank takes its rows of the minibatches of one process, unequal shares
CASES["minibatches"] = dict(normalize="seq_mean_token_mean", epochs=2, num_minibatches=3)


def _generation(lengths=LENGTHS) -> tuple[Generation, torch.Tensor]:
    """A fixed batch of 8 responses to 4 prompts, groups contiguous, and their scores."""
    g = torch.Generator().manual_seed(7)
    n = PROMPTS * GROUP
    ids = torch.randint(0, TOK.vocab_size, (n, PROMPT_LEN + RESPONSE_LEN), generator=g)
    mask = torch.zeros(n, PROMPT_LEN + RESPONSE_LEN, dtype=torch.bool)
    for i, length in enumerate(lengths):
        mask[i, PROMPT_LEN - 1 - i % 2 : PROMPT_LEN + length] = True  # prompts of 1 or 2 tokens
    ids[~mask] = TOK.pad_id
    scores = torch.tensor([0.3, 1.0, -0.5, 0.2, 0.9, -1.0, 0.0, 0.4])
    return Generation(ids, mask, PROMPT_LEN), scores


def _config(case: str) -> GRPOConfig:
    options = dict(prompts_per_step=PROMPTS, group_size=GROUP, max_new_tokens=RESPONSE_LEN, kl_coef=0.1,
                   epochs=1, num_minibatches=1, learning_rate=1e-2, max_grad_norm=100.0, seed=3)
    return GRPOConfig(**(options | CASES[case]))


def _update(rank, cases):
    """Each case's parameters, last gradients and metrics after one update of a fresh trainer on
    this rank's prompts (all of them on one process). SGD in place of AdamW: its step is linear in
    the gradient, where Adam's hardly depends on the scale and turns the float noise of a zero
    gradient (the attention key bias) into a full step."""
    gen, scores = _generation()
    out = {}
    for case in cases:
        policy, _ = tiny_models(seed=1)
        trainer = GRPOTrainer(policy, lambda prompts, completions: [0.0] * len(prompts), TOK, _config(case))
        trainer.opt = torch.optim.SGD(policy.parameters(), lr=0.5)
        rows = torch.arange(trainer.prompt_shard.start * GROUP, trainer.prompt_shard.stop * GROUP)
        metrics = trainer.update(select_rows(gen, rows), scores[rows])
        params = {k: v.detach().clone() for k, v in policy.state_dict().items()}
        params |= {f"{k}.grad": p.grad.clone() for k, p in policy.named_parameters() if p.grad is not None}
        out[case] = (params, {k: v.item() for k, v in metrics.items()})
    return out


PPO_CASES = {
    "single-pass": dict(epochs=1, num_minibatches=1),
    # minibatches of unequal shares, the KL controller moving beta, the value clip
    "minibatches": dict(epochs=2, num_minibatches=3, target_kl=0.01, kl_horizon=10),
}


def _length_reward(prompts, completions):
    return [0.3 * len(c) - c.count("a") for c in completions]


def _ppo_update(rank, cases):
    """As :func:`_update` for RLHF-PPO: the policy's and the critic's parameters and gradients."""
    gen, _ = _generation([max(n, 1) for n in LENGTHS])  # PPO's rewards need a last token in every response
    out = {}
    for case in cases:
        policy, _ = tiny_models(seed=1)
        cfg = RLHFPPOConfig(batch_size=PROMPTS * GROUP, max_new_tokens=RESPONSE_LEN, kl_coef=0.1, seed=3,
                            max_grad_norm=100.0, **PPO_CASES[case])  # fmt: skip
        trainer = PPOTrainer(policy, _length_reward, TOK, cfg)
        trainer.policy_opt = torch.optim.SGD(policy.parameters(), lr=0.5)
        trainer.critic_opt = torch.optim.SGD(trainer.critic.parameters(), lr=0.02)  # value losses are large
        rows = torch.arange(trainer.prompt_shard.start, trainer.prompt_shard.stop)
        metrics = trainer.update(select_rows(gen, rows))
        params = {}
        for prefix, model in (("policy.", policy), ("critic.", trainer.critic)):
            params |= {prefix + k: v.detach().clone() for k, v in model.state_dict().items()}
            params |= {f"{prefix}{k}.grad": p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        params["kl_coef"] = trainer.kl.value.clone()
        out[case] = (params, {k: v.item() for k, v in metrics.items()})
    return out


def _assert_same(single, ranks, cases):
    for case in cases:
        params, metrics = single[case]
        for rank in ranks:
            got_params, got_metrics = rank[case]
            assert got_params.keys() == params.keys()
            for name, value in params.items():
                torch.testing.assert_close(got_params[name], value, rtol=1e-4, atol=1e-5, msg=f"{case}: {name}")
            assert got_metrics.keys() == metrics.keys()
            for name, value in metrics.items():
                assert got_metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-5), f"{case}: {name}"


def test_ppo_update_on_two_ranks_equals_one_process():
    torch.set_num_threads(1)
    single = _ppo_update(0, list(PPO_CASES))
    ranks = run_ranks(_ppo_update, timeout=180, cases=list(PPO_CASES))
    _assert_same(single, ranks, PPO_CASES)
    start = tiny_models(seed=1)[0].state_dict()
    for case in PPO_CASES:  # the step moved the policy
        assert any(not torch.allclose(start[k], single[case][0]["policy." + k]) for k in start), case
    assert single["minibatches"][0]["kl_coef"].item() != 0.1  # the controller moved beta


def test_grpo_update_on_two_ranks_equals_one_process():
    torch.set_num_threads(1)
    single = _update(0, list(CASES))
    ranks = run_ranks(_update, timeout=180, cases=list(CASES))
    _assert_same(single, ranks, CASES)
    for case in CASES:
        # the step moved the policy (a no-op update would pass trivially)
        start = tiny_models(seed=1)[0].state_dict()
        assert any(not torch.allclose(start[k], single[case][0][k]) for k in start), case
    assert math.isfinite(single["token_mean"][1]["loss"])


def _prompts_of(gen: Generation) -> list[list[int]]:
    """The prompt of each group, as token lists."""
    return [gen.ids[i, : gen.prompt_len][gen.mask[i, : gen.prompt_len]].tolist()
            for i in range(0, gen.ids.shape[0], GROUP)]  # fmt: skip


def _train(rank, out_dir, steps=2, **train):
    from tests.rlhf._tiny import PROMPTS as TEXTS

    policy, reward_model = tiny_models(seed=2)
    cfg = GRPOConfig(prompts_per_step=PROMPTS, group_size=GROUP, max_new_tokens=4, num_minibatches=2, seed=4)
    trainer = GRPOTrainer(policy, reward_model, TOK, cfg)
    prompts = []
    trainer.train(TEXTS, steps, on_step=lambda it, metrics, gen: prompts.append(_prompts_of(gen)),
                  out_dir=out_dir, **train)  # fmt: skip
    return {"params": {k: v.detach().clone() for k, v in policy.state_dict().items()}, "prompts": prompts}


def test_grpo_train_run_on_two_ranks(tmp_path):
    """A logged run: every rank ends with the same parameters, the ranks' prompts are the two
    halves of each batch one process draws, and rank 0 alone writes the run."""
    torch.set_num_threads(1)
    single = _train(0, tmp_path / "one")
    ranks = run_ranks(_train, timeout=180, out_dir=tmp_path / "two")
    for name, value in ranks[0]["params"].items():
        torch.testing.assert_close(ranks[1]["params"][name], value, rtol=0, atol=0)
    assert [a + b for a, b in zip(ranks[0]["prompts"], ranks[1]["prompts"])] == single["prompts"]
    assert all(len(p) == PROMPTS // 2 for rank in ranks for p in rank["prompts"])
    with open(tmp_path / "two" / "metrics.csv") as f:
        assert len(f.read().splitlines()) == 1 + 2  # a header and one row per step, written once
    assert (tmp_path / "two" / "checkpoint.pt").exists()


def _csv_rows(out_dir):
    with open(out_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]


def test_a_two_rank_run_resumes_exactly(tmp_path):
    """A 2-process run stopped after 2 steps and resumed to 4 is the straight 4-step run exactly
    (every rank's sampling generator is in the checkpoint); one process refuses its checkpoint."""
    torch.set_num_threads(1)
    straight = run_ranks(_train, timeout=180, out_dir=tmp_path / "straight", steps=4)
    run_ranks(_train, timeout=180, out_dir=tmp_path / "resumed", steps=2)
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["shards"]) == 2
    resumed = run_ranks(_train, timeout=180, out_dir=tmp_path / "resumed", steps=4, resume=True)
    for rank in range(2):
        assert resumed[rank]["prompts"] == straight[rank]["prompts"][2:]
        for name, value in straight[rank]["params"].items():
            torch.testing.assert_close(resumed[rank]["params"][name], value, rtol=0, atol=0, msg=f"{rank}: {name}")
    assert _csv_rows(tmp_path / "resumed") == _csv_rows(tmp_path / "straight")
    with pytest.raises(CheckpointError, match="written by 2 process.*this job has 1"):
        _train(0, out_dir=tmp_path / "resumed", steps=5, resume=True)


def _odd_prompts(rank):
    policy, reward_model = tiny_models()
    GRPOTrainer(policy, reward_model, TOK, GRPOConfig(prompts_per_step=3, group_size=GROUP))


def test_prompts_per_step_must_split_over_the_ranks():
    with pytest.raises(AssertionError, match="prompts_per_step = 3 must be a multiple of the number of processes"):
        run_ranks(_odd_prompts, timeout=120)
