"""The PPO loss options are defined once (PpoOptions) and every loss takes them as the same
keyword arguments, listed in its signature as before."""

import inspect

import pytest
import torch

from fastrl import ops
from fastrl.ops.ppo_loss import ppo_loss_reference

# name -> default, as the losses have documented them (written out here, not read from PpoOptions)
OPTIONS = {"clip_low": 0.2, "clip_high": None, "dual_clip": None, "kl_coef": 0.0, "kl_estimator": "k3",
           "entropy_coef": 0.0, "temperature": 1.0, "normalize": "token_mean", "max_len": None}
LOSSES = [ops.ppo_loss, ops.ppo_loss_from_hidden, ops.gaussian_ppo_loss, ppo_loss_reference]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda f: f.__name__)
def test_every_loss_lists_the_options_as_keywords(loss):
    params = inspect.signature(loss).parameters
    assert "opts" not in params
    for name, default in OPTIONS.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY and params[name].default == default, name
    assert params["mask"].kind is inspect.Parameter.KEYWORD_ONLY and params["mask"].default is None


def test_an_option_reaches_the_loss_and_an_unknown_keyword_is_refused():
    logits = torch.tensor([[2.0, 0.0]])
    args = (logits, torch.tensor([0]), torch.tensor([-2.0]), torch.tensor([1.0]))
    # ratio = exp(log(e^2 / (e^2 + 1)) + 2) ~ 6.5: clipped at 1 + clip_low, so the loss is -(1 + clip_low)
    assert ops.ppo_loss(*args, clip_low=0.5).loss.item() == pytest.approx(-1.5)
    assert ops.ppo_loss(*args).loss.item() == pytest.approx(-1.2)
    with pytest.raises(TypeError, match="clip_lo"):
        ops.ppo_loss(*args, clip_lo=0.5)
    with pytest.raises(ValueError, match="clip_low"):
        ops.ppo_loss(*args, clip_low=-1.0)
