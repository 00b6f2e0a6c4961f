"""localkube's node: the controllers and the kubelet, as clients of the API.

``run_node(config, stop)`` runs, in the caller's event loop and until ``stop``
is set:

- the Deployment controller (``deployments``; Deployments -> Pods directly,
  there are no ReplicaSets in localkube),
- the Endpoints/EndpointSlice controller (``endpoints_controller``),
- the kubelet (``kubelet``, ``podworker``): each pod's containers run as local
  processes in the project's virtual environment (the image is not used), each
  pod on its own address 127.0.0.N,
- the proxy for hostPorts and NodePort Services on 127.0.0.1 (``proxy``).

They reach the API server over HTTP at ``config.api_url`` with the standard
REST semantics (``client``), never through its modules. When ``run_node``
returns, every process it started is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import aiohttp

from localkube.node.addresses import AddressPool
from localkube.node.client import (
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    PODS,
    SERVICES,
    ApiClient,
    token_from_kubeconfig,
    wait_for_api,
)
from localkube.node.config import NodeConfig, log_path
from localkube.node.deployments import DeploymentController
from localkube.node.endpoints_controller import EndpointsController
from localkube.node.events import EventRecorder
from localkube.node.informer import Informer
from localkube.node.kubelet import Kubelet
from localkube.node.podworker import NodeContext
from localkube.node.proxy import ProxyController
from localkube.node.runtime import make_runtime

__all__ = ["NodeConfig", "log_path", "run_node"]

log = logging.getLogger(__name__)


async def run_node(config: NodeConfig, stop: asyncio.Event) -> None:
    """Run every controller until ``stop`` is set, then stop every process started."""
    # Absolute paths: they go into containers' environments and volume links.
    config = dataclasses.replace(config, state_dir=config.state_dir.resolve(),
                                 kubeconfig=config.kubeconfig.resolve())
    config.state_dir.mkdir(parents=True, exist_ok=True)
    token = token_from_kubeconfig(config.kubeconfig)
    async with (ApiClient(config.api_url, token=token, ca_file=config.ca_file) as api,
                aiohttp.ClientSession() as http):
        if not await wait_for_api(api, stop):
            return
        informers = {res.plural: Informer(api, res)
                     for res in (PODS, SERVICES, DEPLOYMENTS, ENDPOINTS, ENDPOINTSLICES)}
        pods, services = informers["pods"], informers["services"]
        events = EventRecorder(api, host="localkube")
        ctx = NodeContext(api=api, config=config, pool=AddressPool(), http=http,
                          events=events, stopping=asyncio.Event(),
                          runtime=make_runtime(config.runtime, kubeconfig=config.kubeconfig))
        kubelet = Kubelet(ctx, pods)
        deployments = DeploymentController(api, informers["deployments"], pods)
        endpoints = EndpointsController(api, services, pods, informers["endpoints"],
                                        informers["endpointslices"])
        proxy = ProxyController(pods, services, api)
        inner_stop = asyncio.Event()
        tasks = [asyncio.create_task(i.run(inner_stop), name=f"informer {name}")
                 for name, i in informers.items()]
        tasks += [asyncio.create_task(deployments.run(inner_stop), name="deployments"),
                  asyncio.create_task(endpoints.run(inner_stop), name="endpoints"),
                  asyncio.create_task(proxy.run(inner_stop), name="proxy")]
        log.info("localkube node running against %s", config.api_url)
        try:
            await stop.wait()
        finally:
            # The kubelet first: its processes must be gone before anything else stops.
            await kubelet.shutdown()
            inner_stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5.0)  # bounded: nothing is left to stop here
            await events.close()
            ctx.pool.close()
