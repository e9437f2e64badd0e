"""Networks for the trainers: MLP actor-critics and Q-networks."""

from fastrl.nn.mlp import ActorCritic, QNetwork, mlp

__all__ = ["ActorCritic", "QNetwork", "mlp"]
