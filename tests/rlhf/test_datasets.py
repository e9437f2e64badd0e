"""Prompt and preference sources (issue 17, "Datasets"): lists of strings, records with extra
columns for the reward functions, ``datasets.Dataset``, conversations through a chat template, and
raw ``transformers`` models and tokenizers where fastrl's wrappers are needed. Tiny local models
and tokenizers only (no downloads); skipped without ``datasets`` or ``transformers``."""

import json

import pytest
import torch

datasets = pytest.importorskip("datasets")
transformers = pytest.importorskip("transformers")

from fastrl.nn.hf import HFCausalLM, HFScalar  # noqa: E402
from fastrl.rlhf.data import Preference, encode_prompts, preference_pairs, prompt_source  # noqa: E402
from fastrl.rlhf.dpo import DPOConfig, DPOTrainer  # noqa: E402
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig  # noqa: E402
from fastrl.rlhf.reward_model import RewardModel, RewardModelConfig, train_reward_model  # noqa: E402
from fastrl.rlhf.tokenizer import HFTokenizer  # noqa: E402
from tests.rlhf._tiny import CFG, TOK, same_state, snapshot, tiny_models  # noqa: E402

Dataset = datasets.Dataset

# prompt -> the answer column a verifiable reward checks against
ANSWERS = {"ab=": "b", "c=": "c", "dda=": "a", "b=": "d"}
RECORDS = [{"prompt": p, "answer": a, "level": i} for i, (p, a) in enumerate(ANSWERS.items())]

# a chat template as a Jinja string: "role: content" lines, then the assistant's turn opened
TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} ; {% endfor %}"
            "{% if add_generation_prompt %}assistant :{% endif %}")  # fmt: skip
WORDS = ["<pad>", "<eos>", "<unk>", "user", "assistant", "system", ":", ";", "hello", "world", "again", "bye"]


def word_tokenizer(template=TEMPLATE):
    """A transformers word-level tokenizer over WORDS, with ``template`` as its chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                               unk_token="<unk>")  # fmt: skip
    tok.chat_template = template
    return tok


def gpt2(vocab, cls=transformers.GPT2LMHeadModel, **kwargs):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=1, n_head=2, **kwargs)
    return cls(config)


def ids_of(text):
    """Word ids of a whitespace-separated text, by hand (the oracle for the tokenizer)."""
    return [WORDS.index(w) for w in text.split()]


# --------------------------------------------------------------------------- prompt sources


def test_prompt_sources_give_the_prompts_and_their_columns():
    texts = list(ANSWERS)
    assert prompt_source(texts).prompts == texts and prompt_source(texts).columns == {}
    for source in (prompt_source(RECORDS), prompt_source(Dataset.from_list(RECORDS))):
        assert source.prompts == texts
        assert source.columns == {"answer": ["b", "c", "a", "d"], "level": [0, 1, 2, 3]}
    # every kind encodes to the same tokens
    expected = encode_prompts(texts, TOK)
    for prompts in (RECORDS, Dataset.from_list(RECORDS), Dataset.from_dict({"prompt": texts})):
        ids, mask = encode_prompts(prompts, TOK)
        assert torch.equal(ids, expected[0]) and torch.equal(mask, expected[1])


def test_bad_prompt_sources_name_the_argument():
    with pytest.raises(ValueError, match=r"prompts: the dataset has no 'prompt' column \(its columns: question, "
                                         r"answer\)"):
        prompt_source(Dataset.from_dict({"question": ["ab="], "answer": ["b"]}))
    with pytest.raises(ValueError, match="prompts: the dataset is empty"):
        prompt_source(Dataset.from_dict({"prompt": []}))
    with pytest.raises(TypeError, match=r"prompts is a DatasetDict \(splits: train\): pass one split, "
                                        r"e.g. prompts\['train'\]"):
        prompt_source(datasets.DatasetDict({"train": Dataset.from_list(RECORDS)}))
    with pytest.raises(TypeError, match="prompts is an IterableDataset"):
        prompt_source(Dataset.from_list(RECORDS).to_iterable_dataset())
    with pytest.raises(TypeError, match="got dict: wrap a single record in a list"):
        prompt_source(RECORDS[0])
    with pytest.raises(ValueError, match="prompts: no prompts given"):
        prompt_source([])
    with pytest.raises(ValueError, match=r"prompt 1: the record has no 'prompt' key \(its keys: text\)"):
        prompt_source([{"prompt": "ab="}, {"text": "c="}])
    with pytest.raises(ValueError, match="prompt 1: its keys .* differ from prompt 0's"):
        prompt_source([{"prompt": "ab=", "answer": "b"}, {"prompt": "c=", "level": 1}])
    with pytest.raises(TypeError, match="prompt 1: expected a dict with a 'prompt'"):
        prompt_source([{"prompt": "ab="}, "c="])
    with pytest.raises(TypeError, match="prompt 1 is a dict among prompts that are not"):
        prompt_source(["ab=", {"prompt": "c="}])
    with pytest.raises(TypeError, match=r"prompt 2: expected a string, a conversation .* got int"):
        prompt_source(["ab=", "c=", 7])
    with pytest.raises(TypeError, match=r"prompt 0: expected a string, a conversation .* got NoneType"):
        prompt_source(Dataset.from_dict({"prompt": [None]}))
    with pytest.raises(ValueError, match="column 'completions' has the name of a reward function's own argument"):
        prompt_source([{"prompt": "ab=", "completions": "x"}])


def test_conversations_render_through_the_chat_template():
    tok = HFTokenizer(word_tokenizer())
    chat = [{"role": "system", "content": "bye"}, {"role": "user", "content": "hello world"}]
    source = prompt_source([chat], tok)
    assert source.prompts == ["system : bye ; user : hello world ; assistant :"]  # rendered by hand
    ids, mask = encode_prompts([[{"role": "user", "content": "hello"}], "world again"], tok)
    assert ids.tolist() == [ids_of("user : hello ; assistant :"), [0, 0, 0, 0] + ids_of("world again")]
    assert mask.sum(1).tolist() == [6, 2]
    # records and datasets carry conversations too
    records = [{"prompt": chat, "answer": "x"}]
    assert prompt_source(Dataset.from_list(records), tok).prompts == source.prompts


def test_conversations_without_a_chat_template_are_refused():
    chat = [{"role": "user", "content": "hello"}]
    with pytest.raises(ValueError, match=r"prompt 1 is a conversation .* but the HFTokenizer has no chat template: "
                                         r"set tokenizer.chat_template"):
        prompt_source(["hello", chat], HFTokenizer(word_tokenizer(template=None)))
    with pytest.raises(ValueError, match=r"prompt 0 is a conversation .* CharTokenizer has no chat template \(only "
                                         r"a transformers tokenizer"):
        prompt_source([chat], TOK)
    with pytest.raises(ValueError, match="prompt 0 is a conversation .* no tokenizer was given"):
        prompt_source([chat])
    with pytest.raises(ValueError, match=r"prompt 0: message 0 must have 'role' and 'content' keys, got \['text'\]"):
        prompt_source([[{"text": "hello"}]], HFTokenizer(word_tokenizer()))
    with pytest.raises(ValueError, match="prompt 0 is an empty conversation"):
        prompt_source([[]], HFTokenizer(word_tokenizer()))


# --------------------------------------------------------------------------- columns reach the reward functions


class AnswerReward:
    """A verifiable reward that checks each call's answers against the prompts it was given (the
    prompts decode exactly with the CharTokenizer), and records the calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, answer, level):
        assert len(answer) == len(level) == len(completions) == len(prompts)
        assert answer == [ANSWERS[p] for p in prompts]  # each completion gets its own prompt's row
        assert level == [list(ANSWERS).index(p) for p in prompts]
        self.calls.append(list(prompts))
        return [float(c.startswith(a)) for c, a in zip(completions, answer)]


def length(prompts, completions):  # takes no column: gets none
    return [float(len(c)) for c in completions]


def test_grpo_reward_functions_get_the_dataset_columns():
    policy, _ = tiny_models()
    reward, seen = AnswerReward(), []

    def anything(prompts, completions, **kwargs):  # **kwargs: every column
        seen.append(sorted(kwargs))
        return [0.0] * len(completions)

    trainer = GRPOTrainer(policy, [reward, length, anything], TOK,
                          GRPOConfig(prompts_per_step=3, group_size=2, max_new_tokens=4))  # fmt: skip
    trainer.train(Dataset.from_list(RECORDS), iterations=3)
    assert len(reward.calls) == 3 and all(len(c) == 6 for c in reward.calls)
    # each prompt's group is consecutive: one prompt per pair of rows
    assert all(c[0::2] == c[1::2] for c in reward.calls)
    assert seen == [["answer", "level"]] * 3


def test_dynamic_sampling_keeps_the_columns_with_the_resampled_prompts():
    policy, _ = tiny_models()
    reward = AnswerReward()
    constant = lambda prompts, completions, answer: [float(a == "b") for a in answer]  # noqa: E731
    cfg = GRPOConfig(prompts_per_step=2, group_size=2, max_new_tokens=3, dynamic_sampling=True, max_sampling_rounds=3)
    # the groups' scores never spread (the checking reward weighs 0): every step samples three
    # rounds, more prompts drawn each time
    GRPOTrainer(policy, [reward, constant], TOK, cfg, reward_weights=[0, 1]).train(RECORDS, iterations=2)
    assert len(reward.calls) == 6


def test_ppo_reward_functions_get_the_dataset_columns(tmp_path):
    policy, reward_model = tiny_models()
    reward = AnswerReward()
    trainer = PPOTrainer(policy, reward, TOK, RLHFPPOConfig(batch_size=4, max_new_tokens=3))
    trainer.train(RECORDS, iterations=2, out_dir=tmp_path / "run")  # through fastrl.rlhf.run too
    assert len(reward.calls) == 2 and all(len(c) == 4 for c in reward.calls)


# --------------------------------------------------------------------------- raw transformers objects


def test_raw_transformers_model_and_tokenizer_are_wrapped():
    hf_tok = word_tokenizer()
    model = gpt2(len(WORDS))
    start = snapshot(model)
    chat = [{"role": "user", "content": "hello"}]
    got = []

    def says_hello(prompts, completions, answer):
        got.extend(answer)
        return [float("hello" in c) for c in completions]

    trainer = GRPOTrainer(model, says_hello, hf_tok, GRPOConfig(prompts_per_step=2, group_size=2, max_new_tokens=4))
    assert isinstance(trainer.policy, HFCausalLM) and trainer.policy.hf is model
    assert isinstance(trainer.tokenizer, HFTokenizer) and trainer.tokenizer.hf is hf_tok
    trainer.train([{"prompt": chat, "answer": "hello"}, {"prompt": "world", "answer": "x"}], 2)  # mixed kinds
    assert not same_state(model, start)  # the user's model trained in place
    assert set(got) <= {"hello", "x"} and len(got) == 8


def test_ppo_wraps_a_raw_critic_and_reward_classifier():
    hf_tok = word_tokenizer()
    critic = gpt2(len(WORDS), transformers.GPT2ForSequenceClassification, num_labels=1)
    scorer = gpt2(len(WORDS), transformers.GPT2ForSequenceClassification, num_labels=1)
    trainer = PPOTrainer(gpt2(len(WORDS)), scorer, hf_tok, RLHFPPOConfig(batch_size=2, max_new_tokens=3), critic=critic)
    assert isinstance(trainer.critic, HFScalar) and trainer.critic.hf is critic
    start = snapshot(critic)
    trainer.train(["hello", "world again"], iterations=1)
    assert not same_state(critic, start)


def test_wrong_model_kinds_name_the_argument():
    hf_tok = word_tokenizer()
    classifier = gpt2(len(WORDS), transformers.GPT2ForSequenceClassification, num_labels=1)
    with pytest.raises(TypeError, match="policy: a GPT2ForSequenceClassification has no LM head"):
        GRPOTrainer(classifier, length, hf_tok, GRPOConfig())
    with pytest.raises(TypeError, match="policy must be a fastrl GPT, .* got Linear"):
        GRPOTrainer(torch.nn.Linear(2, 2), length, hf_tok, GRPOConfig())
    with pytest.raises(TypeError, match="tokenizer must be a transformers tokenizer or have the fastrl.rlhf.Tokenizer "
                                        "protocol .* got str"):
        GRPOTrainer(gpt2(len(WORDS)), length, "gpt2", GRPOConfig())
    with pytest.raises(ValueError, match="reward_model: GPT2LMHeadModel is not a decoder-only sequence classifier"):
        GRPOTrainer(gpt2(len(WORDS)), gpt2(len(WORDS)), hf_tok, GRPOConfig())
    with pytest.raises(ValueError, match="critic: the transformers classifier has num_labels=2"):
        PPOTrainer(gpt2(len(WORDS)), length, hf_tok, RLHFPPOConfig(),
                   critic=gpt2(len(WORDS), transformers.GPT2ForSequenceClassification, num_labels=2))  # fmt: skip
    with pytest.raises(TypeError, match=r"model is a transformers GPT2ForSequenceClassification: wrap it as "
                                        r"fastrl.rlhf.HFRewardModel\(model\)"):
        train_reward_model(classifier, [Preference("hello", "world", "again")], hf_tok, RewardModelConfig())


# --------------------------------------------------------------------------- preference datasets

PAIRS = [{"prompt": "ab=", "chosen": "b", "rejected": "a"},
         {"prompt": "c=", "chosen": "c", "rejected": "dd"},
         {"prompt": "dda=", "chosen": "a", "rejected": "b", "margin": 0.5},
         {"prompt": "b=", "chosen": "d", "rejected": "c"}]


def test_preference_pairs_from_dicts_and_datasets():
    expected = [Preference("ab=", "b", "a", source="pairs[0]"),
                Preference("c=", "c", "dd", source="pairs[1]"),
                Preference("dda=", "a", "b", 0.5, "pairs[2]"),
                Preference("b=", "d", "c", source="pairs[3]")]
    assert preference_pairs(PAIRS) == expected
    rows = [dict(p, margin=p.get("margin", 0.0)) for p in PAIRS]  # a dataset column has a value in every row
    assert preference_pairs(Dataset.from_list(rows)) == expected
    assert preference_pairs(expected) == expected
    ranked = preference_pairs(Dataset.from_dict({"prompt": ["ab="], "ranking": [["c", "b", "a"]]}))
    assert [(p.chosen, p.rejected) for p in ranked] == [("c", "b"), ("c", "a"), ("b", "a")]


def test_reward_model_and_dpo_train_on_a_dataset_as_on_preferences():
    pairs = [Preference(p["prompt"], p["chosen"], p["rejected"], p.get("margin", 0.0)) for p in PAIRS]
    rows = [dict(p, margin=p.get("margin", 0.0)) for p in PAIRS]
    results = []
    for data in (pairs, Dataset.from_list(rows)):
        torch.manual_seed(0)
        results.append(train_reward_model(RewardModel(CFG), data, TOK, RewardModelConfig(epochs=2, batch_size=2)))
    assert results[0] == results[1]
    losses = []
    for data in (pairs, Dataset.from_list(rows)):
        policy, _ = tiny_models()
        trainer = DPOTrainer(policy, data, TOK, DPOConfig(batch_size=2))
        losses.append([trainer.step()["loss"].item() for _ in range(3)])
    assert losses[0] == losses[1]


def test_conversational_preferences_are_rendered():
    tok = HFTokenizer(word_tokenizer())
    record = {"prompt": [{"role": "user", "content": "hello"}],
              "chosen": [{"role": "assistant", "content": "world"}],
              "rejected": [{"role": "assistant", "content": "bye"}]}  # fmt: skip
    (pair,) = preference_pairs(Dataset.from_list([record]), tok)
    # by hand: the prompt with the assistant's turn opened, each response what follows it
    assert (pair.prompt, pair.chosen, pair.rejected) == ("user : hello ; assistant :", " world ; ", " bye ; ")
    policy = gpt2(len(WORDS))
    start = snapshot(policy)
    DPOTrainer(policy, [record], tok.hf, DPOConfig(batch_size=1)).step()  # a raw model and tokenizer
    assert not same_state(policy, start)


def test_bad_preference_sources_name_the_argument():
    with pytest.raises(ValueError, match=r"pairs: the dataset has no 'rejected' column \(its columns: prompt, "
                                         r"chosen\); it needs prompt and chosen and rejected "
                                         r"\(or prompt and ranking\)"):
        preference_pairs(Dataset.from_dict({"prompt": ["a"], "chosen": ["b"]}))
    with pytest.raises(ValueError, match="pairs: the dataset is empty"):
        preference_pairs(Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []}))
    with pytest.raises(ValueError, match="pairs: no preference pairs given"):
        preference_pairs([])
    with pytest.raises(TypeError, match="pairs must be a list of Preference objects .* got dict"):
        preference_pairs(PAIRS[0])
    with pytest.raises(TypeError, match=r"pairs\[1\] must be a Preference or a dict .* got str"):
        preference_pairs([PAIRS[0], "ab="])
    with pytest.raises(ValueError, match=r"pairs\[1\]: missing field 'rejected'"):
        preference_pairs([PAIRS[0], {"prompt": "c=", "chosen": "c"}])
    with pytest.raises(ValueError, match=r"pairs\[0\]: field 'chosen' is a conversation but 'prompt' is not"):
        preference_pairs([{"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}], "rejected": "c"}])
    with pytest.raises(ValueError, match=r"pairs\[0\]: field 'prompt' is a conversation .* CharTokenizer"):
        preference_pairs([{"prompt": [{"role": "user", "content": "a"}], "chosen": "b", "rejected": "c"}], TOK)


# --------------------------------------------------------------------------- fastrl rlhf train

CLI_CALLS = []


def cli_answer_reward(prompts, completions, answer):
    """A reward function the run file names: checks each completion's answer is its prompt's."""
    CLI_CALLS.append(list(answer))
    assert answer == [ANSWERS[p] for p in prompts]
    return [float(c.startswith(a)) for c, a in zip(completions, answer)]


def test_cli_prompts_jsonl_columns_reach_the_reward_functions(tmp_path):
    from fastrl import cli

    lines = [{"prompt": p, "answer": a} for p, a in ANSWERS.items()]
    (tmp_path / "prompts.jsonl").write_text("".join(f'{{"prompt": "{r["prompt"]}", "answer": "{r["answer"]}"}}\n'
                                                    for r in lines))  # fmt: skip
    (tmp_path / "run.toml").write_text(
        'steps = 2\n[model]\nalphabet = "abcd="\ngpt = { block_size = 16, n_layer = 1, n_head = 2, n_embd = 16 }\n'
        '[data]\nprompts = "prompts.jsonl"\n[reward]\nfunctions = ["tests.rlhf.test_datasets:cli_answer_reward"]\n'
        "[config]\nprompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 3\n")
    CLI_CALLS.clear()
    args = ["rlhf", "train", "grpo", "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "run"), "--quiet"]
    assert cli.main(args) == 0
    assert len(CLI_CALLS) == 2 and all(len(c) == 4 for c in CLI_CALLS)


def test_preference_jsonl_conversations_are_rendered(tmp_path):
    from fastrl.rlhf.data import load_preferences

    record = {"prompt": [{"role": "user", "content": "hello"}], "chosen": [{"role": "assistant", "content": "world"}],
              "rejected": "bye"}  # fmt: skip
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "hello", "chosen": "world", "rejected": "bye"}) + "\n" + json.dumps(record))
    pairs = load_preferences(path, HFTokenizer(word_tokenizer()))
    # by hand: the second prompt with the assistant's turn opened; a text response stays as it is
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("hello", "world", "bye"),
                                                                ("user : hello ; assistant :", " world ; ", "bye")]
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: field 'prompt' is a conversation .* CharTokenizer"):
        load_preferences(path, TOK)
