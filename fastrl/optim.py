"""Optimizers whose step is a fused fastrl kernel; otherwise torch's, state and all.

``RMSprop`` is ``torch.optim.RMSprop``, but its centred variant without momentum or weight decay
(the MinAtar paper's DQN optimizer, and the tuned MinAtar DQN's) steps through
``fastrl.ops.rmsprop_centered_``: one pass over each parameter where torch runs seven ops on it
from a Python loop. A step is 2x faster for the MinAtar Q-network's 136k parameters and 3.4x for
3.2M (bench/README.md); a MinAtar DQN frame takes 1.50 ms instead of 1.74. Its state and
``state_dict`` are torch's, so checkpoints move between the two. The update is torch's but for
the square root, which the kernel rounds correctly where torch's CPU ``sqrt`` (MKL's vector math)
may be an ulp off; any other configuration runs torch's own update.
"""

from __future__ import annotations

import torch
from torch.optim.rmsprop import rmsprop as torch_rmsprop

from fastrl.ops.rmsprop import layout_problem, rmsprop_centered_unchecked_

__all__ = ["RMSprop"]


class RMSprop(torch.optim.RMSprop):
    __doc__ = f"""torch.optim.RMSprop whose centred, momentum-free, undecayed steps are fused (see
    fastrl.optim). Arguments and state are torch's:

    {torch.optim.RMSprop.__doc__}"""

    @staticmethod
    def fuses(group: dict) -> bool:
        """Whether a parameter group's steps take the fused kernel."""
        return (group["centered"] and group["momentum"] == 0 and group["weight_decay"] == 0
                and not group["maximize"] and not group["capturable"] and not group["differentiable"]
                and not isinstance(group["lr"], torch.Tensor))

    @torch.no_grad()
    def step(self, closure=None):
        if any(g["differentiable"] for g in self.param_groups):
            return super().step(closure)  # gradients through the step: torch's graph, not a kernel's
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, square_avgs, grad_avgs, momentum_buffers, steps = [], [], [], [], [], []
            has_complex = self._init_group(group, params, grads, square_avgs, momentum_buffers, grad_avgs, steps)
            fused = self.fuses(group) and not has_complex and params
            if fused and layout_problem(params, grads, square_avgs, grad_avgs) is None:
                torch._foreach_add_(steps, 1)
                hypers = group["lr"], group["alpha"], group["eps"]  # checked by torch's constructor
                rmsprop_centered_unchecked_(params, grads, square_avgs, grad_avgs, *hypers)
            else:
                torch_rmsprop(
                    params, grads, square_avgs, grad_avgs, momentum_buffers, steps, lr=group["lr"],
                    alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                    momentum=group["momentum"], centered=group["centered"], foreach=group["foreach"],
                    maximize=group["maximize"], differentiable=group["differentiable"],
                    capturable=group["capturable"], has_complex=has_complex)
        return loss

