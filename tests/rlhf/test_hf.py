"""The transformers adapter, on a tiny GPT-2 built from a config (no download); skipped
without transformers."""

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fastrl.nn.gpt import GPTConfig, ScalarGPT, generate  # noqa: E402
from fastrl.nn.hf import HFCausalLM  # noqa: E402
from fastrl.rlhf.data import encode_prompts  # noqa: E402
from fastrl.rlhf.ppo import PPOConfig, PPOTrainer  # noqa: E402
from fastrl.rlhf.reward_model import RewardModel  # noqa: E402
from tests.rlhf._tiny import PROMPTS, TOK, same_state, snapshot  # noqa: E402


def _tiny_gpt2(vocab=TOK.vocab_size):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    return HFCausalLM(transformers.GPT2LMHeadModel(config)).double()


def test_padding_and_kv_cache_sampling_match_full_recompute():
    model = _tiny_gpt2()
    torch.testing.assert_close(
        model(torch.tensor([[0, 0, 3, 4, 5]]), torch.tensor([[0, 0, 1, 1, 1]]).bool())[:, 2:],
        model(torch.tensor([[3, 4, 5]])),
    )
    ids, mask = encode_prompts(PROMPTS, TOK)
    runs = [generate(model, ids, mask, max_new_tokens=8, stop_token=TOK.eos_id, use_cache=cache,
                     generator=torch.Generator().manual_seed(0)) for cache in (True, False)]  # fmt: skip
    assert torch.equal(runs[0].ids, runs[1].ids)


def test_ppo_runs_on_a_transformers_policy():
    policy = _tiny_gpt2().float()
    cfg = GPTConfig(vocab_size=TOK.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    reward_model = RewardModel(cfg).requires_grad_(False)
    with pytest.raises(ValueError, match="pass a critic"):
        PPOTrainer(policy, reward_model, TOK, PPOConfig())
    trainer = PPOTrainer(policy, reward_model, TOK, PPOConfig(batch_size=4, max_new_tokens=5),
                         critic=ScalarGPT(cfg))  # fmt: skip
    reference = snapshot(trainer.reference)
    ids, mask = encode_prompts(PROMPTS, TOK)
    history = [trainer.step(ids, mask)[0] for _ in range(2)]
    assert history[0]["kl"].item() == 0.0
    assert all(math.isfinite(v.item()) for m in history for v in m.values())
    assert same_state(trainer.reference, reference)


def test_mismatched_tokenizer_and_transformers_vocab():
    with pytest.raises(ValueError, match="tokenizer has 7 ids but the policy embeds only 5"):
        PPOTrainer(_tiny_gpt2(vocab=5), RewardModel(GPTConfig(vocab_size=7)), TOK, PPOConfig(),
                   critic=ScalarGPT(GPTConfig(vocab_size=7)))  # fmt: skip


def _word_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, "hello": 3, "world": 4, "again": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>",
                                               eos_token="<eos>", unk_token="<unk>")  # fmt: skip
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_transformers_tokenizer_from_a_local_directory(tmp_path):
    from fastrl.rlhf.tokenizer import HFTokenizer, Tokenizer

    tok = HFTokenizer(str(_word_tokenizer(tmp_path)))
    assert isinstance(tok, Tokenizer)
    assert (tok.vocab_size, tok.pad_id, tok.eos_id) == (6, 0, 1)
    assert tok.encode("hello world") == [3, 4]
    assert tok.decode(torch.tensor([3, 5, 1, 0])) == "hello again"
    ids, mask = encode_prompts(["hello", "world again"], tok)
    assert ids.tolist() == [[0, 3], [4, 5]] and mask.tolist() == [[False, True], [True, True]]
