"""Start a brix sidecar (``python -m inference.sidecar``) next to an engine, for a test.

Usage::

    def test_x(procs, tmp_path):
        engine = start_sim(procs, extra_args=FAST)
        sidecar = start_sidecar(procs, engine_url=engine.url,
                                extra_args=("--adapter-roots", str(tmp_path)))
        httpx.get(sidecar.url + "/metrics")

``sidecar.url`` is ``http://127.0.0.1:PORT`` (bound to 127.0.0.1 on a free port).
Pass ``env={"BRIX_SIDECAR_TOKEN": ...}`` to require a bearer token. The cache
directory is a fresh folder under the ``procs`` log folder unless ``--cache-dir``
is in ``extra_args``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

from tests.helpers.procs import Proc, ProcessGroup


def start_sidecar(
    procs: ProcessGroup,
    *,
    engine_url: str,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Proc:
    """Start a sidecar for the engine at ``engine_url``; returns once it listens."""
    args = ["-m", "inference.sidecar", "--engine-url", engine_url, "--port", "0"]
    if "--cache-dir" not in extra_args:
        procs.log_dir.mkdir(parents=True, exist_ok=True)
        args += ["--cache-dir", tempfile.mkdtemp(prefix="sidecar-cache-", dir=procs.log_dir)]
    full_env = {"BIND_HOST": "127.0.0.1", **(env or {})}
    return procs.start([*args, *extra_args], name="sidecar", env=full_env, timeout=timeout)
