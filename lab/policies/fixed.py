"""``fixed``: no autoscaling, a constant replica count (for routing studies)."""

from __future__ import annotations

from dataclasses import dataclass

from lab.policies.base import MetricsView

__all__ = ["Fixed"]


@dataclass
class Fixed:
    """Always answers ``replicas``, whatever the load.

    ``initial_replicas`` (the same number) tells a simulator that honours it
    to start the Deployment at that size rather than scale to it at the first
    decision.
    """

    replicas: int = 1
    interval: float = 15.0

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {self.replicas}")
        if self.interval <= 0:
            raise ValueError(f"interval must be > 0, got {self.interval}")

    @property
    def initial_replicas(self) -> int:
        return self.replicas

    @property
    def min_replicas(self) -> int:
        """Its floor, where a simulator's run settles after the trace."""
        return self.replicas

    def decide(self, *, now: float, metrics: MetricsView, replicas: int, ready: int) -> int:
        return self.replicas
