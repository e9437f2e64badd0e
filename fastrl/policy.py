"""A trained policy without its trainer: load it in one line, act, or export it for plain torch.

    policy = fastrl.load_policy("runs/ppo-CartPole-v1")       # a run directory or checkpoint.pt
    action = policy.act(obs)                                  # numpy or torch, one obs or a batch
    fastrl.export_policy(policy, "policy.pt2")                # torch.export: runs without fastrl

Only the acting network (and the observation normalizer, when the run kept one) is rebuilt: no
environment, critic optimizer or replay buffer. Its layer sizes are read from the saved weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fastrl.nn.mlp import mlp
from fastrl.nn.normalize import ObsNormalizer
from fastrl.utils.checkpoint import CheckpointError


class Policy(nn.Module):
    """Observations in, actions out: ``forward`` is the greedy policy on a float batch
    ``[N, *obs_shape]`` (what :func:`export_policy` exports); :meth:`act` is the convenient call.

    ``kind``: "categorical" (logits, discrete actions), "gaussian" (mean and a learned log std,
    continuous actions) or "q" (Q-values, discrete actions; always greedy)."""

    def __init__(self, network: nn.Sequential, kind: str, obs_shape: tuple[int, ...],
                 obs_norm: ObsNormalizer | None = None, log_std: torch.Tensor | None = None,
                 algo: str = "", env_id: str = ""):
        super().__init__()
        if kind not in ("categorical", "gaussian", "q"):
            raise ValueError(f"kind must be 'categorical', 'gaussian' or 'q', got {kind!r}")
        self.network, self.kind, self.obs_shape, self.obs_norm = network, kind, tuple(obs_shape), obs_norm
        self.log_std = nn.Parameter(log_std, requires_grad=False) if log_std is not None else None
        self.algo, self.env_id = algo, env_id

    @property
    def discrete(self) -> bool:
        return self.kind != "gaussian"

    def _head(self, obs: torch.Tensor) -> torch.Tensor:
        if len(self.obs_shape) == 3:  # images go to the conv network whole (no normalizer)
            return self.network(obs)
        x = obs.reshape(obs.shape[0], -1)
        if self.obs_norm is not None:
            x = self.obs_norm(x)
        return self.network(x)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Greedy actions for ``obs [N, *obs_shape]`` (float): int64 ``[N]`` or float ``[N, act_dim]``."""
        out = self._head(obs)
        return out if self.kind == "gaussian" else out.argmax(-1)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = True):
        """Actions for one observation (``obs_shape``) or a batch (``[N, *obs_shape]``), given as a
        numpy array (or list) or a tensor; returned as the same kind: for one observation of a
        discrete policy a Python int, else an array/tensor of the batch's leading shape.

        ``deterministic=False`` samples from the policy (not defined for a Q-network)."""
        as_numpy = not isinstance(obs, torch.Tensor)
        x = torch.as_tensor(np.asarray(obs) if as_numpy else obs)
        device = next(self.parameters()).device
        single = tuple(x.shape) == self.obs_shape
        if not single and tuple(x.shape[1:]) != self.obs_shape:
            raise ValueError(f"obs must have shape {self.obs_shape} (one observation) or [N, "
                             f"{', '.join(map(str, self.obs_shape))}] (a batch), got {tuple(x.shape)}")
        x = x.to(device=device, dtype=torch.float32)
        batch = x[None] if single else x
        if deterministic:
            actions = self.forward(batch)
        elif self.kind == "q":
            raise ValueError("deterministic=False: a Q-network policy (DQN) acts greedily; it has no "
                             "distribution to sample from")
        elif self.kind == "categorical":
            actions = torch.distributions.Categorical(logits=self._head(batch)).sample()
        else:
            mean = self._head(batch)
            actions = mean + self.log_std.exp() * torch.randn_like(mean)
        if single:
            actions = actions[0]
            if self.discrete:
                return int(actions)
        if as_numpy:
            return actions.cpu().numpy()
        return actions.to(obs.device)


def _sequential(state: dict[str, torch.Tensor], prefix: str, activation: type[nn.Module]) -> nn.Sequential:
    """The MLP whose Linear weights are ``{prefix}{2k}.weight``, sizes read from their shapes."""
    indices = sorted(int(m[1]) for k in state if (m := re.fullmatch(rf"{re.escape(prefix)}(\d+)\.weight", k)))
    if not indices:
        raise KeyError(f"no {prefix}*.weight")
    weights = [state[f"{prefix}{i}.weight"] for i in indices]
    network = mlp([weights[0].shape[1], *(w.shape[0] for w in weights)], activation)
    network.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return network


def _conv_network(state: dict[str, torch.Tensor], torso: str, head: str, obs_shape) -> nn.Sequential:
    """A MinAtarTorso at ``{torso}`` and a Linear at ``{head}``, sizes read from their weights."""
    from fastrl.nn.conv import MinAtarTorso

    channels, hidden = state[f"{torso}conv.weight"].shape[0], state[f"{torso}fc.weight"].shape[0]
    network = nn.Sequential(MinAtarTorso(obs_shape, channels, hidden),
                            nn.Linear(hidden, state[f"{head}weight"].shape[0]))
    network.load_state_dict({f"0.{k[len(torso):]}": v for k, v in state.items() if k.startswith(torso)}
                            | {f"1.{k[len(head):]}": v for k, v in state.items() if k.startswith(head)})
    return network


def load_policy(path: str | Path, device: str | torch.device | None = None) -> Policy:
    """The policy of a fastrl checkpoint (a file, or a run directory holding ``checkpoint.pt``),
    on ``device`` (default: the CPU), in eval mode. Raises CheckpointError naming the file."""
    # Imported here: `import fastrl` stays light (the trainers pull in gymnasium and the envs).
    from fastrl.algos.common import load_trainer_checkpoint

    state, path = load_trainer_checkpoint(path)
    modules, algo = state["modules"], state["algo"]
    obs_shape = tuple(state["obs"].shape[1:])
    try:
        if "agent" in modules and "actor.0.conv.weight" in modules["agent"]:  # ConvActorCritic (images)
            agent = modules["agent"]
            network = _conv_network(agent, "actor.0.", "actor.1.", obs_shape)
            policy = Policy(network, "categorical", obs_shape)
        elif "q" in modules and "torso.conv.weight" in modules["q"]:  # ConvQNetwork (images)
            policy = Policy(_conv_network(modules["q"], "torso.", "head.", obs_shape), "q", obs_shape)
        elif "agent" in modules:  # the on-policy trainers' ActorCritic
            agent = modules["agent"]
            network = _sequential(agent, "actor.", nn.Tanh)
            kind = "gaussian" if agent.get("log_std") is not None else "categorical"
            policy = Policy(network, kind, obs_shape, log_std=agent.get("log_std"))
        elif "q" in modules:  # DQN's QNetwork
            policy = Policy(_sequential(modules["q"], "net.", nn.ReLU), "q", obs_shape)
        else:
            raise KeyError(f"no policy network among {sorted(modules)}")
        if "obs_norm" in modules:
            policy.obs_norm = ObsNormalizer(int(np.prod(obs_shape)))
            policy.obs_norm.load_state_dict(modules["obs_norm"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the {algo} policy from it: {e}") from None
    policy.algo, policy.env_id = algo, str(state["config"].get("env_id", ""))
    return policy.to(device or "cpu").eval().requires_grad_(False)


def export_policy(policy: Policy, path: str | Path) -> Path:
    """Write ``policy``'s greedy forward as a ``torch.export`` program with a dynamic batch
    dimension: ``torch.export.load(path).module()(obs)`` runs it with plain torch, no fastrl."""
    example = torch.zeros((2, *policy.obs_shape), device=next(policy.parameters()).device)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(policy, (example,), dynamic_shapes=({0: batch},))
    path = Path(path)
    from fastrl.utils.checkpoint import write_atomically

    return write_atomically(path, lambda f: torch.export.save(program, f))
