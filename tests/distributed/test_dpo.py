"""DPO under a 2-process gloo job (issue 15): each rank trains on its share of every global batch
(disjoint, together the batch; one rank's share empty when a batch has fewer pairs than ranks),
and the update, the metrics and the weights are those of one process on the whole batch. SGD
stands in for AdamW, whose step hides a gradient's scale."""

import random

import pytest
import torch

from fastrl.rlhf import dpo
from fastrl.rlhf.data import Preference
from tests.rlhf._tiny import TOK, tiny_models

from ._launch import run_ranks


def _pairs(n=11, seed=0):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        prompt = "".join(rng.choice("abcd") for _ in range(rng.randint(1, 3))) + "="
        chosen, rejected = ("".join(rng.choice("abcd") for _ in range(rng.randint(1, 4))) for _ in range(2))
        if chosen != rejected:
            out.append(Preference(prompt, chosen, rejected))
    return out


# 11 pairs: batches of 4, 4, 3 (shares 2+2, 2+2, 1+2) or of 5, 5, 1 (the last one's share on rank 0
# empty); a small max_grad_norm makes the clip act (on the averaged gradient)
CASES = {"batch4": dict(batch_size=4), "batch5": dict(batch_size=5), "clipped": dict(batch_size=4, max_grad_norm=0.05)}


def _train(rank, cases):
    out = {}
    for case in cases:
        policy, _ = tiny_models(seed=1)
        trainer = dpo.DPOTrainer(policy, _pairs(), TOK, dpo.DPOConfig(beta=0.5, seed=2, **({"max_grad_norm": 100.0}
                                                                                           | CASES[case])))
        trainer.opt = torch.optim.SGD(policy.parameters(), lr=0.5)
        seen = []  # per step, the pairs (their ids) this rank's policy scored
        logprobs = dpo._logprobs

        def spy(model, batch, logprobs=logprobs, seen=seen, policy=policy):
            if model is policy:
                seen[-1] += batch.ids[: len(batch)].tolist()
            return logprobs(model, batch)

        dpo._logprobs = spy
        metrics = []
        try:
            for _ in range(2 * trainer.steps_per_epoch):
                seen.append([])
                metrics.append({k: v.item() for k, v in trainer.step().items()})
        finally:
            dpo._logprobs = logprobs
        params = {k: v.detach().clone() for k, v in policy.state_dict().items()}
        params |= {f"{k}.grad": p.grad.clone() for k, p in policy.named_parameters()}
        out[case] = {"params": params, "metrics": metrics, "seen": seen, }
    return out


def test_dpo_on_two_ranks_equals_one_process():
    torch.set_num_threads(1)
    single = _train(0, list(CASES))
    ranks = run_ranks(_train, timeout=180, cases=list(CASES))
    start = tiny_models(seed=1)[0].state_dict()
    for case, one in single.items():
        assert any(not torch.equal(start[k], one["params"][k]) for k in start), case  # the policy moved
        for rank in ranks:
            got = rank[case]
            for name, value in one["params"].items():
                torch.testing.assert_close(got["params"][name], value, rtol=1e-4, atol=1e-6, msg=f"{case}: {name}")
            for step, (a, b) in enumerate(zip(got["metrics"], one["metrics"], strict=True)):
                assert a == pytest.approx(b, rel=1e-4, abs=1e-6), f"{case}: step {step}"
        # each rank scored its own part of every batch: rank 0's then rank 1's rows are the batch of
        # one process (not the whole batch on each rank)
        for step, rows in enumerate(one["seen"]):
            shares = [rank[case]["seen"][step] for rank in ranks]
            assert shares[0] + shares[1] == rows, f"{case}: step {step}"
            assert [len(s) for s in shares] == [len(rows) // 2, len(rows) - len(rows) // 2], f"{case}: step {step}"
    assert ranks[0]["batch5"]["seen"][2] == []  # a batch of one pair: rank 0's share is empty
