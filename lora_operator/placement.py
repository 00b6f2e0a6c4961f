"""Which pods should hold an adapter: a pure function, no I/O.

The eligible pods are the Ready pods labelled with the adapter's base model
that match its ``podSelector``. With no ``replicas`` every eligible pod holds
the adapter; with ``replicas: n`` the first n eligible pods in this order do:

1. pods that already hold it (so a converged placement never moves),
2. pods whose sidecar answered (an unreachable one cannot load anything),
3. pods with the fewest adapters loaded (spreads adapters over the pods),
4. the pod name (a stable tie-break: the same input gives the same answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from brix.contract import MODEL_LABEL
from lora_operator.model import AdapterSpec


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pod as placement sees it."""

    name: str
    labels: Mapping[str, str]
    ready: bool
    holds: bool = False  # the adapter is loaded there now
    reachable: bool = True  # its sidecar answered
    adapters: int = 0  # adapters loaded there (all of them, this one included)


def eligible(adapter: AdapterSpec, pod: Candidate) -> bool:
    """May ``pod`` hold ``adapter`` at all?"""
    return (
        pod.ready
        and pod.labels.get(MODEL_LABEL) == adapter.base_model
        and adapter.pod_selector.matches(pod.labels)
    )


def _preference(pod: Candidate) -> tuple[bool, bool, int, str]:
    return (not pod.holds, not pod.reachable, pod.adapters, pod.name)


def place(adapter: AdapterSpec, pods: Iterable[Candidate]) -> frozenset[str]:
    """The names of the pods that should hold ``adapter``."""
    chosen = sorted((p for p in pods if eligible(adapter, p)), key=_preference)
    if adapter.replicas is not None:
        chosen = chosen[: adapter.replicas]
    return frozenset(p.name for p in chosen)
