"""The masked statistics every trainer shares (``fastrl.utils.stats``) against hand-worked
numbers, with garbage (NaN, inf) at the masked positions."""

import math

import pytest
import torch

from fastrl.utils.stats import masked_mean, whiten

X = torch.tensor([[1.0, 2.0, 1e6], [3.0, float("nan"), float("inf")], [4.0, -7.0, 5.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 0, 0]]).bool()


def test_masked_mean_by_hand():
    assert masked_mean(X, MASK).item() == 2.5
    assert masked_mean(X, torch.zeros_like(MASK)).item() == 0.0  # nothing valid: 0, not NaN
    assert masked_mean(torch.tensor([1.0, 2.0, 6.0])).item() == 3.0  # no mask: every entry


def test_whiten_by_hand():
    # mean 2.5; variance over the valid entries, divided by their count (4, not 3):
    # (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    got = whiten(X, MASK)
    scale = 1 / math.sqrt(1.25 + 1e-8)
    expected = torch.tensor([[-1.5 * scale, -0.5 * scale, 0.0], [0.5 * scale, 0.0, 0.0], [1.5 * scale, 0.0, 0.0]],
                            dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)
    # eps bounds the scale of a batch with no spread: 0 out, not NaN
    same = torch.where(MASK, 3.0, X)
    assert torch.equal(whiten(same, MASK), torch.zeros_like(X))
    assert torch.equal(whiten(X, torch.zeros_like(MASK)), torch.zeros_like(X))
    assert whiten(X, MASK, eps=1.0)[2, 0].item() == pytest.approx(1.5 / math.sqrt(2.25))


def test_whiten_without_a_mask_by_hand():
    # [1, 2, 6]: mean 3, population variance (4 + 1 + 9) / 3 = 14 / 3
    got = whiten(torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64))
    expected = torch.tensor([-2.0, -1.0, 3.0], dtype=torch.float64) / math.sqrt(14 / 3 + 1e-8)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
