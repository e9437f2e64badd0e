"""Top-k / top-p sampling against an independent oracle: the filter itself against a sorted-list
Python implementation (ties, top_k = 1, k >= V, top_p = 0 and 1, the nucleus boundary), and the
distribution of sampled tokens, through ``_sample`` and through ``generate`` with and without
the KV cache, against the oracle's probabilities (chi-square, and exactly 0 draws of a dropped
token)."""

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from fastrl.nn.gpt import (
    GPT,
    GPTConfig,
    _sample,
    filter_logits,
    generate,
    inverse_cdf,
    last_token_index,
    positions_from_mask,
)
from tests.rlhf._tiny import CFG, TOK, eager_to_stop


def kept_by_oracle(logits, top_k=None, top_p=None):
    """Token ids that top-k then top-p keep, from the definitions on plain Python lists: top-k
    keeps every logit >= the k-th largest; top-p keeps a token unless the tokens strictly more
    probable than it (renormalized over top-k's set) already hold top_p of the mass, and always
    keeps the most probable. Also returns the smallest gap |mass above - top_p| seen, so that
    callers can avoid cases decided by rounding."""
    keep = list(range(len(logits)))
    if top_k is not None and top_k < len(logits):
        kth = sorted(logits, reverse=True)[top_k - 1]
        keep = [i for i in keep if logits[i] >= kth]
    gap = math.inf
    if top_p is not None and top_p < 1:
        top = max(logits[i] for i in keep)
        weights = {i: math.exp(logits[i] - top) for i in keep}
        total = sum(weights.values())
        probs = {i: w / total for i, w in weights.items()}
        kept = []
        for i in keep:
            above = sum(probs[j] for j in keep if logits[j] > logits[i])
            if above > 0:
                gap = min(gap, abs(above - top_p))
            if above == 0 or above < top_p:
                kept.append(i)
        keep = kept
    return keep, gap


def oracle_probs(logits, temperature, top_k=None, top_p=None):
    """The sampling distribution: softmax of logits / temperature over the oracle's kept set."""
    scaled = [z / temperature for z in logits]
    keep, _ = kept_by_oracle(scaled, top_k, top_p)
    top = max(scaled[i] for i in keep)
    weights = {i: math.exp(scaled[i] - top) for i in keep}
    total = sum(weights.values())
    return [weights.get(i, 0.0) / total for i in range(len(logits))]


def kept_by_filter(logits, top_k=None, top_p=None, dtype=torch.float64):
    row = torch.tensor([logits], dtype=dtype)
    out = filter_logits(row, top_k, top_p)
    kept = torch.isfinite(out[0])
    # kept tokens keep their logits, dropped ones are -inf
    assert torch.equal(out[0][kept], row[0][kept])
    assert (out[0][~kept] == -math.inf).all()
    return kept.nonzero().flatten().tolist()


# log(2), 0, 0: probabilities exactly 0.5, 0.25, 0.25 in float32 and float64 (checked below)
HALF_QUARTER_QUARTER = [math.log(2.0), 0.0, 0.0]


FILTER_CASES = {
    "top_k=2": ([3.0, 1.0, 2.0, 0.0], 2, None, [0, 2]),
    "top_k=2_kth_tied": ([3.0, 1.0, 2.0, 2.0, 0.0], 2, None, [0, 2, 3]),  # both stay
    "top_k=1_max_tied": ([1.0, 5.0, 5.0, 0.0], 1, None, [1, 2]),
    "top_k=1": ([1.0, 5.0, 4.0, 0.0], 1, None, [1]),
    "top_k=V": ([1.0, 5.0, 4.0, 0.0], 4, None, [0, 1, 2, 3]),
    "top_k>V": ([1.0, 5.0, 4.0, 0.0], 9, None, [0, 1, 2, 3]),
    "top_p=1": ([1.0, 5.0, 4.0, 0.0], None, 1.0, [0, 1, 2, 3]),
    "top_p=1_unlikely_token": ([1.0, -30.0, 4.0, 0.0], None, 1.0, [0, 1, 2, 3]),
    "top_p=0": ([1.0, 5.0, 4.0, 0.0], None, 0.0, [1]),  # the most probable only
    "top_p=0_max_tied": ([1.0, 5.0, 5.0, 0.0], None, 0.0, [1, 2]),
    "top_p_reached_exactly": (HALF_QUARTER_QUARTER, None, 0.5, [0]),  # 0.5 reaches 0.5: smallest set
    "top_p_splits_no_tie": (HALF_QUARTER_QUARTER, None, 0.6, [0, 1, 2]),  # both 0.25 tokens, not one
    "top_p_at_tie_boundary": (HALF_QUARTER_QUARTER, None, 0.75, [0, 1, 2]),
    "top_p=0.4": (HALF_QUARTER_QUARTER, None, 0.4, [0]),
    "top_k_before_top_p": (HALF_QUARTER_QUARTER, 1, 0.9, [0]),
    "top_p=0.99": ([5.0, 0.0, -1.0], None, 0.99, [0]),  # p = 0.9909, 0.0067, 0.0025
    "top_p=0.995": ([5.0, 0.0, -1.0], None, 0.995, [0, 1]),
    "top_p_all_tied": ([0.0, 0.0, 0.0, 0.0], None, 0.3, [0, 1, 2, 3]),
    "top_k_tie_then_top_p": ([2.0, 1.0, 1.0, 1.0, -1.0], 3, 0.5, [0, 1, 2, 3]),
    # top-p on top-k's renormalized probabilities: 0.73 of the mass above token 1 (0.64 before)
    "top_k_renormalizes": ([2.0, 1.0, -1.0, -1.0, -1.0, -1.0], 2, 0.7, [0]),
}


@pytest.mark.parametrize(("logits", "top_k", "top_p", "kept"), list(FILTER_CASES.values()), ids=list(FILTER_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_filter_by_hand(logits, top_k, top_p, kept, dtype):
    assert kept_by_oracle(logits, top_k, top_p)[0] == kept  # the oracle agrees with the hand-worked set
    assert kept_by_filter(logits, top_k, top_p, dtype) == kept


def test_the_boundary_cases_have_exact_probabilities():
    # the top_p = 0.5 and 0.75 cases above sit exactly on the boundary: only meaningful if the
    # probabilities (and their running sums) are exact
    for dtype in (torch.float32, torch.float64):
        probs = torch.tensor(HALF_QUARTER_QUARTER, dtype=dtype).softmax(-1)
        assert probs.tolist() == [0.5, 0.25, 0.25]
        assert probs.cumsum(-1).tolist() == [0.5, 0.75, 1.0]


@given(
    # small integers so that ties are common; halves so the logits are exact
    logits=st.lists(st.integers(-6, 6), min_size=1, max_size=9).map(lambda xs: [x / 2 for x in xs]),
    top_k=st.none() | st.integers(1, 11),
    top_p=st.none() | st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0),
)
def test_filter_matches_the_oracle(logits, top_k, top_p):
    kept, gap = kept_by_oracle(logits, top_k, top_p)
    assume(gap > 1e-9)  # not decided by the last bit of a running sum
    assert kept_by_filter(logits, top_k, top_p) == kept


def test_filter_works_row_by_row():
    rows = [[3.0, 1.0, 2.0, 0.0, 2.0], [0.0, 0.0, 1.0, -2.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
    out = filter_logits(torch.tensor(rows), 3, 0.7)
    for row, got in zip(rows, out):
        assert torch.isfinite(got).nonzero().flatten().tolist() == kept_by_oracle(row, 3, 0.7)[0]


def chi_square_limit(dof: int) -> float:
    """The chi-square quantile at 1 - 1e-6 (Wilson-Hilferty): a correct sampler stays below it."""
    z = 4.753
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def assert_samples_follow(tokens: torch.Tensor, probs: list[float]) -> None:
    counts = torch.bincount(tokens, minlength=len(probs)).tolist()
    n = len(tokens)
    for token, (count, p) in enumerate(zip(counts, probs)):
        if p == 0:
            assert count == 0, f"token {token} should be filtered out, drawn {count} times"
    kept = [(count, p) for count, p in zip(counts, probs) if p > 0]
    if len(kept) == 1:
        assert kept[0][0] == n
        return
    chi2 = sum((count - n * p) ** 2 / (n * p) for count, p in kept)
    assert chi2 < chi_square_limit(len(kept) - 1), (counts, [n * p for p in probs])


# a row whose filtered distributions are far from every nucleus boundary
LOGITS = [1.2, 2.0, -0.5, 1.2, 0.3, -3.0, 0.9]
SAMPLING = [
    {"temperature": 1.0},
    {"temperature": 0.7, "top_k": 3},
    {"temperature": 1.0, "top_k": 1},
    {"temperature": 1.3, "top_p": 0.8},
    {"temperature": 0.6, "top_k": 4, "top_p": 0.7},
    {"temperature": 2.0, "top_k": 5, "top_p": 0.9},
]


def _case_id(options):
    return "-".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.parametrize("options", SAMPLING, ids=_case_id)
def test_oracle_cases_are_not_on_a_boundary(options):
    scaled = [z / options["temperature"] for z in LOGITS]
    _, gap = kept_by_oracle(scaled, options.get("top_k"), options.get("top_p"))
    assert gap > 0.02


@pytest.mark.parametrize("options", SAMPLING, ids=_case_id)
def test_sampled_tokens_follow_the_filtered_distribution(options):
    n = 40_000
    logits = torch.tensor([LOGITS]).expand(n, -1)
    tokens = _sample(logits, options["temperature"], options.get("top_k"), options.get("top_p"),
                     torch.Generator().manual_seed(0))  # fmt: skip
    assert_samples_follow(tokens, oracle_probs(LOGITS, **options))


class _FixedLogits(torch.nn.Module):
    """A stand-in language model whose next-token logits are always ``LOGITS``."""

    def __init__(self):
        super().__init__()
        self.cfg = GPTConfig(vocab_size=len(LOGITS), block_size=8, n_layer=1, n_head=1, n_embd=1)
        self.lm_head = torch.nn.Linear(1, len(LOGITS), bias=False)
        self.lm_head.weight.data = torch.tensor(LOGITS)[:, None]

    def trunk(self, ids, mask, past=None):
        return torch.ones(ids.shape[0], ids.shape[1], 1), None


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no_cache"])
@pytest.mark.parametrize("options", SAMPLING, ids=_case_id)
def test_generate_samples_the_filtered_distribution(options, use_cache):
    n = 20_000
    prompts = torch.ones(n, 2, dtype=torch.long)
    gen = generate(_FixedLogits(), prompts, max_new_tokens=2, use_cache=use_cache,
                   generator=torch.Generator().manual_seed(1), **options)  # fmt: skip
    probs = oracle_probs(LOGITS, **options)
    for t in range(2):
        assert_samples_follow(gen.response[:, t], probs)


# -------------------------------------------------------------------------- positions, lengths


def test_inverse_cdf_by_hand_at_the_ends_of_the_unit_interval():
    # masses 0, 2, 0, 1, 0 (unnormalized): token 1 below a third of the total, token 3 above it
    cdf = torch.tensor([[0.0, 2.0, 2.0, 3.0, 3.0]], dtype=torch.float64)
    draw = {u: int(inverse_cdf(cdf, torch.tensor([[u]], dtype=torch.float64))) for u in (0.0, 0.6, 0.7, 1.0)}
    # u = 0 skips the leading token of mass 0; u = 1 (rounding up to the total) stops at the last
    # token of mass > 0, not at the trailing one of mass 0
    assert draw == {0.0: 1, 0.6: 1, 0.7: 3, 1.0: 3}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_sampling_non_finite_logits_is_an_error_naming_them(bad):
    logits = torch.zeros(2, 5)
    logits[1, 2] = bad
    with pytest.raises(ValueError, match="logits must be finite"):
        _sample(logits, 1.0, None, None, None)
    with pytest.raises(ValueError, match="logits must be finite"):  # every token filtered away
        _sample(torch.full((1, 3), -math.inf), 1.0, None, None, None)


def test_positions_from_mask_by_hand():
    """Real tokens are numbered 0, 1, 2, ... in order, whatever padding lies between them; left
    padding gets position 0."""
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 0, 1], [0, 1, 0, 0, 1]]).bool()
    pos = positions_from_mask(mask)
    real = [[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1]]
    for row in range(4):
        assert pos[row][mask[row]].tolist() == real[row]
    assert pos[0, :2].tolist() == [0, 0] and pos[3, 0].item() == 0


def test_last_token_index_by_hand():
    mask = torch.tensor([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 1, 0], [0, 0, 0]]).bool()
    assert last_token_index(mask).tolist() == [0, 2, 1, 1, -1]  # no real token: -1


def test_generate_runs_to_max_new_tokens_when_no_row_stops():
    """A stop token the model never emits: every row samples all max_new_tokens (the batch's
    check for an early stop, every 4 tokens, must not cut it)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=16, n_layer=1, n_head=2, n_embd=16))
    prompt = torch.tensor([[1, 2], [3, 3]])
    greedy = generate(model, prompt, max_new_tokens=9, temperature=0)
    unused = sorted(set(range(7)) - set(greedy.response.flatten().tolist()))
    assert unused, "the greedy responses use every token: no stop token to choose"
    gen = generate(model, prompt, max_new_tokens=9, temperature=0, stop_token=unused[0])
    assert gen.response.shape == (2, 9) and gen.response_mask.all()
    assert torch.equal(gen.ids, greedy.ids)


def test_generate_defaults_sample_at_temperature_1_and_pad_with_0():
    torch.manual_seed(0)
    model = eager_to_stop(GPT(CFG))  # EOS likely: rows stop at different lengths and get padding
    prompt = torch.tensor([[2, 3], [4, 4], [3, 5], [5, 2]])
    eos = TOK.eos_id

    def run(**kw):
        return generate(model, prompt, max_new_tokens=8, stop_token=eos,
                        generator=torch.Generator().manual_seed(3), **kw)

    default, explicit = run(), run(temperature=1.0, pad_token=0)
    assert torch.equal(default.ids, explicit.ids) and torch.equal(default.mask, explicit.mask)
    assert not torch.equal(default.ids, run(temperature=0).ids)  # sampled, not greedy
    padding = ~default.response_mask
    assert padding.any() and (default.response[padding] == 0).all()
