"""Kubernetes discovery: Pods, Deployments and LoraAdapters -> the routing table.

One thread per (kind, namespace) lists, then watches from the list's
resourceVersion with the official ``kubernetes`` client (which is
synchronous); every result goes to the event loop with
``loop.call_soon_threadsafe``, where the table lives. A watch that ends is
resumed from the last resourceVersion seen; an API error is retried with
backoff, keeping what the table knows; only a 410 Gone (the version is too
old) makes a fresh list, which then replaces that kind's state in one step.

What is watched (``brix.dev/model`` is the label of a model's Deployment, Pods
and Service):

- Pods with the label: Ready pods are the model's endpoints;
- Deployments with the label: the model exists even with no pod (requests
  for it are held while it scales from zero);
- LoraAdapters (``brix.dev/v1alpha1``): an adapter routes to the pods in its
  ``status.loadedPods``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from brix.contract import LORA_GROUP, LORA_PLURAL, LORA_VERSION, MODEL_LABEL
from gateway.table import STATE_OF, Key, Kind, RoutingTable, State, key_of

log = logging.getLogger(__name__)

WATCH_SECONDS = 60
"""Server-side length of one watch call; it is resumed at once when it ends."""
MAX_BACKOFF = 30.0
"""Longest wait between two tries after API errors (doubling from ``backoff``)."""


def kubernetes_configured(kubeconfig: str | None) -> bool:
    """Can a Kubernetes configuration be found (flag, $KUBECONFIG, ~/.kube/config, in-cluster)?"""
    if kubeconfig or os.environ.get("KUBECONFIG") or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    return os.path.exists(os.path.expanduser("~/.kube/config"))


def api_client(kubeconfig: str | None) -> k8s.ApiClient:
    """The usual order: ``kubeconfig``, else $KUBECONFIG (or ~/.kube/config), else in-cluster."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        api: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path,
        )
        return api
    configuration = k8s.Configuration()
    k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
        client_configuration=configuration,
    )
    return k8s.ApiClient(configuration)


@dataclass(frozen=True)
class Source:
    """One list-and-watch: a kind, in one namespace (None: all), through one API call."""

    kind: Kind
    namespace: str | None
    list_fn: Callable[..., Any]
    args: tuple[Any, ...]
    selector: str | None


class Discovery:
    """Keeps ``table`` in step with the cluster until ``stop``."""

    def __init__(
        self,
        table: RoutingTable,
        loop: asyncio.AbstractEventLoop,
        api: k8s.ApiClient,
        *,
        namespaces: Iterable[str] = (),
        backoff: float = 0.5,
        sources: list[Source] | None = None,  # None: Pods, Deployments, LoraAdapters (tests)
    ) -> None:
        self._table = table
        self._loop = loop
        self._backoff = backoff
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: set[k8s_watch.Watch] = set()
        self._lock = threading.Lock()
        self.synced = {kind: threading.Event() for kind in ("pods", "deployments", "adapters")}
        core, apps, custom = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.CustomObjectsApi(api)
        lora = (LORA_GROUP, LORA_VERSION)
        self._sources: list[Source] = [] if sources is None else list(sources)
        scopes: list[str | None] = [*namespaces] or [None]
        for ns in scopes if sources is None else []:
            if ns is None:
                self._sources += [
                    Source("pods", None, core.list_pod_for_all_namespaces, (), MODEL_LABEL),
                    Source("deployments", None, apps.list_deployment_for_all_namespaces, (),
                            MODEL_LABEL),
                    Source("adapters", None, custom.list_cluster_custom_object,
                            (*lora, LORA_PLURAL), None),
                ]
            else:
                self._sources += [
                    Source("pods", ns, core.list_namespaced_pod, (ns,), MODEL_LABEL),
                    Source("deployments", ns, apps.list_namespaced_deployment, (ns,),
                            MODEL_LABEL),
                    Source("adapters", ns, custom.list_namespaced_custom_object,
                            (*lora, ns, LORA_PLURAL), None),
                ]

    def start(self) -> None:
        for source in self._sources:
            thread = threading.Thread(
                target=self._run, args=(source,), daemon=True,
                name=f"watch-{source.kind}-{source.namespace or 'all'}",
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for w in self._watches:
                w.stop()  # type: ignore[no-untyped-call]

    # --- one source ---

    def _kwargs(self, source: Source) -> dict[str, Any]:
        return {"label_selector": source.selector} if source.selector else {}

    def _list(self, source: Source) -> tuple[dict[Key, State], str]:
        response = source.list_fn(*source.args, **self._kwargs(source), _preload_content=False,
                                  _request_timeout=30)
        body = json.loads(response.data)
        to_state = STATE_OF[source.kind]
        states: dict[Key, State] = {}
        for obj in body.get("items") or ():
            state = to_state(obj)
            if state is not None:
                states[key_of(obj)] = state
        return states, str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _apply(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._stopping.is_set():
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self, source: Source) -> None:
        what = f"{source.kind} in {source.namespace or 'all namespaces'}"
        version: str | None = None
        delay = self._backoff
        to_state = STATE_OF[source.kind]
        while not self._stopping.is_set():
            try:
                if version is None:
                    states, version = self._list(source)
                    self._apply(self._table.replace, source.kind, states, source.namespace)
                    self._apply(self.synced[source.kind].set)
                    log.info("listed %d %s", len(states), what)
                w = k8s_watch.Watch()  # type: ignore[no-untyped-call]
                with self._lock:
                    self._watches.add(w)
                try:
                    for event in w.stream(  # type: ignore[no-untyped-call]
                        source.list_fn, *source.args, **self._kwargs(source),
                        resource_version=version, timeout_seconds=WATCH_SECONDS,
                        allow_watch_bookmarks=True, _request_timeout=WATCH_SECONDS + 30,
                    ):
                        obj = event["raw_object"]
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        kind = event["type"]
                        if kind == "BOOKMARK":
                            continue
                        if kind == "DELETED":
                            self._apply(self._table.delete, source.kind, key_of(obj))
                        else:
                            self._apply(self._table.upsert, source.kind, key_of(obj),
                                        to_state(obj))
                        delay = self._backoff
                finally:
                    with self._lock:
                        self._watches.discard(w)
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch of %s expired (410); listing again", what)
                    version = None
                    continue
                log.warning("watch of %s: API error %s %s; retrying in %.1fs", what,
                            exc.status, exc.reason, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception as exc:
                log.warning("watch of %s failed: %s: %s; retrying in %.1fs", what,
                            type(exc).__name__, exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
