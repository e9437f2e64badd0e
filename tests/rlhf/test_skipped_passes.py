"""The no-grad passes TRL skips, skipped here too, with unchanged results: the old log-probs when
epochs = num_minibatches = 1 (the update's own forward gives them, detached: the ratio is exactly
1), the reference log-probs when kl_coef = 0; and a transformers policy's forward computes no
full-vocabulary logits."""

import pytest
import torch

import fastrl.rlhf.grpo as grpo
import fastrl.rlhf.ppo as ppo
import fastrl.rlhf.rollout as rollout
from fastrl.ops import ppo_loss_from_hidden
from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig
from fastrl.rlhf.rollout import response_logprobs
from tests.rlhf._tiny import PROMPTS, TOK, Spy, eager_to_stop, tiny_models


def _count_logprob_passes(monkeypatch, trainer):
    """Which models ``response_logprobs`` runs on (the trainers call it through
    ``rollout.rollout_logprobs``): a list of 'policy' / 'reference'."""
    seen, real = [], rollout.response_logprobs
    names = {id(trainer.policy): "policy", id(trainer.reference): "reference"}

    def counted(model, gen, temperature):
        seen.append(names[id(model)])
        return real(model, gen, temperature)

    monkeypatch.setattr(rollout, "response_logprobs", counted)
    return seen


def _one_step(monkeypatch, module, make_trainer, skip: bool):
    """One step of a fresh trainer; ``skip=False`` forces the separate old-log-prob pass (the
    path every multi-epoch config takes). Returns (passes, spy, trainer, generation); passes
    lists the log-prob passes and ends with 'reference forwards: n' (every forward of it)."""
    with monkeypatch.context() as patch:
        if not skip:
            patch.setattr(rollout, "single_pass", lambda cfg: False)
        trainer = make_trainer()
        passes = _count_logprob_passes(patch, trainer)
        ref_calls = []
        trainer.reference.trunk.register_forward_hook(lambda *a: ref_calls.append(1))
        spy = Spy(patch, module)
        ids, mask = encode_prompts(PROMPTS, TOK)
        _, gen = trainer.step(ids, mask)
    return passes + [f"reference forwards: {len(ref_calls)}"], spy, trainer, gen


def _grpo(kl_coef):
    def make():
        policy, reward_model = tiny_models()
        cfg = GRPOConfig(prompts_per_step=4, group_size=3, max_new_tokens=6, epochs=1, num_minibatches=1,
                         kl_coef=kl_coef, learning_rate=1e-2)  # fmt: skip
        return GRPOTrainer(eager_to_stop(policy), reward_model, TOK, cfg)

    return make


@pytest.mark.parametrize("kl_coef", [0.0, 0.3])
def test_grpo_single_pass_skips_the_old_and_reference_passes_with_the_same_result(monkeypatch, kl_coef):
    passes, spy, trainer, gen = _one_step(monkeypatch, grpo, _grpo(kl_coef), skip=True)
    passes_before, spy_before, before, gen_before = _one_step(monkeypatch, grpo, _grpo(kl_coef), skip=False)
    assert torch.equal(gen.ids, gen_before.ids)  # same samples: the comparison is like for like
    assert passes_before[0] == "policy"  # the forced path makes the old pass ...
    assert "policy" not in passes  # ... the default one does not
    # a reference pass only when it is used
    assert passes == ["reference", "reference forwards: 1"] if kl_coef else passes == ["reference forwards: 0"]
    assert len(spy.rows) == 1  # the one forward of the update, with grad
    (args, kwargs, (loss, _)), = spy.calls
    (args_b, kwargs_b, (loss_b, _)), = spy_before.calls
    torch.testing.assert_close(args[3], args_b[3], rtol=1e-5, atol=1e-6)  # old log-probs
    torch.testing.assert_close(loss, loss_b, rtol=1e-5, atol=1e-6)
    for p, q in zip(trainer.policy.parameters(), before.policy.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    if kl_coef == 0:
        assert kwargs["ref_logprobs"] is None
        # the reference's term is weighted by kl_coef = 0: adding it back changes nothing
        ref_logp = response_logprobs(trainer.reference, gen, 1.0)
        rows = torch.tensor(spy.rows[0])
        with_ref, _ = ppo_loss_from_hidden(*args, **{**kwargs, "ref_logprobs": ref_logp[rows]})
        torch.testing.assert_close(with_ref, loss)


def test_grpo_still_makes_the_old_pass_with_several_minibatches(monkeypatch):
    def make():
        policy, reward_model = tiny_models()
        cfg = GRPOConfig(prompts_per_step=4, group_size=3, max_new_tokens=6, epochs=1, num_minibatches=2)
        return GRPOTrainer(policy, reward_model, TOK, cfg)

    passes, spy, _, _ = _one_step(monkeypatch, grpo, make, skip=True)
    assert passes == ["policy", "reference", "reference forwards: 1"] and len(spy.rows) == 2


def _ppo():
    policy, reward_model = tiny_models()
    cfg = RLHFPPOConfig(batch_size=4, max_new_tokens=6, epochs=1, num_minibatches=1, kl_coef=0.0,
                        learning_rate=1e-2)  # fmt: skip
    return PPOTrainer(eager_to_stop(policy), reward_model, TOK, cfg)


def test_ppo_single_pass_at_kl_coef_zero_skips_both_passes_with_the_same_result(monkeypatch):
    passes, spy, trainer, gen = _one_step(monkeypatch, ppo, _ppo, skip=True)
    passes_before, _, before, gen_before = _one_step(monkeypatch, ppo, _ppo, skip=False)
    assert torch.equal(gen.ids, gen_before.ids)
    assert passes == ["reference forwards: 0"] and passes_before == ["policy", "reference forwards: 0"]
    for model in ("policy", "critic"):
        for p, q in zip(getattr(trainer, model).parameters(), getattr(before, model).parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    assert float(trainer.kl.value) == 0.0


def test_hf_policy_forward_computes_no_full_vocabulary_logits():
    transformers = pytest.importorskip("transformers")
    from fastrl.nn.hf import HFCausalLM

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=TOK.vocab_size, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    lm = transformers.GPT2LMHeadModel(config).eval()
    policy = HFCausalLM(lm)
    head_calls = []
    lm.lm_head.register_forward_hook(lambda *a: head_calls.append(1))
    ids, mask = encode_prompts(PROMPTS, TOK)
    hidden, _ = policy.trunk(ids, mask)
    assert head_calls == []
    # the same final hidden states as the full model's own forward (which does call the head)
    with torch.no_grad():
        expected = lm(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True,
                      position_ids=(mask.long().cumsum(1) - 1).clamp(min=0)).hidden_states[-1]  # fmt: skip
    torch.testing.assert_close(hidden[mask], expected[mask])
    assert head_calls == [1]
