"""Start the brix gateway (``python -m gateway``) for a test.

Usage::

    def test_x(procs):
        engine = start_sim(procs, name="m1", extra_args=FAST)
        gw = start_gateway(procs, extra_args=("--static-routes", f"m1={engine.url}"))
        httpx.post(gw.url + "/v1/completions", json={"model": "m1", "prompt": "hi"})

With ``kubeconfig`` the gateway watches that cluster (Pods, Deployments,
LoraAdapters); without it, it serves only the routes given in ``extra_args``
(``--static-routes MODEL=URL``, ``--services``, ``--hold-models``).
``gw.url`` is ``http://127.0.0.1:PORT``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.helpers.procs import Proc, ProcessGroup


def start_gateway(
    procs: ProcessGroup,
    *,
    kubeconfig: str | Path | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    """Start a gateway on a free loopback port; returns once it listens."""
    discovery = ["--kubeconfig", str(kubeconfig)] if kubeconfig else ["--discovery", "none"]
    full_env = {"BIND_HOST": "127.0.0.1", **(env or {})}
    return procs.start(
        ["-m", "gateway", "--port", "0", *discovery, *extra_args],
        name="gateway", env=full_env, timeout=timeout,
    )
