"""``python -m localkube``: the API server and the node, in one process.

Starts the API server on 127.0.0.1, writes ``STATE_DIR/kubeconfig``, runs the
node (kubelet and controllers, ``localkube.node``) in the same event loop, and
prints ``localkube listening on http://127.0.0.1:PORT`` once both run. On
SIGTERM or SIGINT the node stops every process it started, then the server
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from brix.config import load_settings
from brix.serving import configure_logging, install_signal_exit, print_ready
from localkube.api import tls
from localkube.api.authn import Keys
from localkube.api.kubeconfig import write_kubeconfig
from localkube.api.persistence import Persistence, unpersisted_base
from localkube.api.server import ApiServer, ServerOptions
from localkube.settings import LocalkubeSettings

log = logging.getLogger("localkube")


async def run(settings: LocalkubeSettings) -> int:
    state_dir = _prepare_state_dir(settings.state_dir)
    server = ApiServer(ServerOptions(
        state_dir=state_dir, watch_history=settings.watch_history,
        bookmark_interval=settings.bookmark_interval,
        pod_force_delete_after=settings.pod_force_delete_after,
        event_ttl=settings.event_ttl,
        audit_log=_audit_path(settings.audit_log),
    ), keys=Keys.load_or_create(state_dir / "auth.json"))
    persistence = None
    if settings.persist:
        persistence = Persistence(state_dir / "objects.json", server)
        restored = persistence.load()
        if restored:
            log.info("restored %d objects from %s", restored, persistence.path)
    else:
        server.store.set_resource_version(unpersisted_base(time.time()))
    server.bootstrap()

    runner = web.AppRunner(server.app(), handler_cancellation=True, access_log=None,
                           shutdown_timeout=2.0)
    await runner.setup()
    tls_files = tls.ensure(state_dir / "tls")
    site = web.TCPSite(runner, settings.host, settings.port,
                       ssl_context=tls_files.server_context())
    try:
        await site.start()
    except OSError as exc:
        print(f"localkube: could not listen on {settings.host}:{settings.port} ({exc}); "
              "pick another port with --port", file=sys.stderr)
        await runner.cleanup()
        return 1
    port = _bound_port(runner, settings.port)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    url = f"https://{host}:{port}"
    server.server_address = f"{host}:{port}"
    kubeconfig = write_kubeconfig(state_dir / "kubeconfig", url,
                                  token=server.authn.keys.admin_token,
                                  ca_pem=tls_files.ca_cert.read_bytes())
    if persistence is not None:
        persistence.start()

    stop = asyncio.Event()
    install_signal_exit(asyncio.get_running_loop(), stop)
    node_task: asyncio.Task[None] | None = None
    if settings.node:
        node_task = _start_node(url, kubeconfig, state_dir, stop, tls_files.ca_cert,
                                runtime=settings.runtime)
    print_ready("localkube", "https", host, port)
    log.info("kubeconfig written to %s", kubeconfig)

    code = 0
    stop_wait = asyncio.create_task(stop.wait())
    waiting: set[asyncio.Future[None] | asyncio.Task[bool]] = {stop_wait}
    if node_task is not None:
        waiting.add(node_task)
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if not stop.is_set():
        log.error("the node stopped on its own; stopping localkube")
        code = 1
    stop.set()
    stop_wait.cancel()
    if node_task is not None:
        try:
            await node_task
        except Exception:
            log.exception("the node failed")
            code = 1
    if persistence is not None:
        await persistence.stop()
    await runner.cleanup()
    return code


def _audit_path(path: str) -> Path | None:
    return Path(path).resolve() if path else None


def _prepare_state_dir(path: str) -> Path:
    state_dir = Path(path).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    return state_dir


def _start_node(url: str, kubeconfig: Path, state_dir: Path,
                stop: asyncio.Event, ca_file: Path, *,
                runtime: str = "process") -> asyncio.Task[None] | None:
    try:
        from localkube.node import NodeConfig, run_node
    except ImportError as exc:
        log.warning("no node (localkube.node cannot be imported: %s); serving the API alone",
                    exc)
        return None
    config = NodeConfig(api_url=url, kubeconfig=kubeconfig, state_dir=state_dir,
                        ca_file=ca_file, python=sys.executable, runtime=runtime)
    return asyncio.create_task(run_node(config, stop), name="localkube node")


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return asked


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(LocalkubeSettings, argv, prog="python -m localkube")
    configure_logging(settings.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if settings.runtime == "podman" and settings.node and shutil.which("podman") is None:
        print("localkube: --runtime podman needs podman: apt-get install podman runc",
              file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(settings))
    return 130


if __name__ == "__main__":
    sys.exit(main())
