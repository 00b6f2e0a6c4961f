"""The HTTP side of the API server (aiohttp): routing, verbs, watch streams.

Paths follow the Kubernetes API::

    /api/v1[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]
    /apis/{group}/{version}[/namespaces/{ns}]/{plural}[/{name}[/{subresource}]]

plus discovery, /version, /openapi/v2 and /v3, health checks, and
``/localkube/v1/prometheus-sd`` (Prometheus HTTP service discovery).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from localkube.api import (
    audit,
    discovery,
    errors,
    openapi,
    patching,
    podlogs,
    promsd,
    protobuf,
    rbac,
    tables,
    watching,
)
from localkube.api.admission import Admission, crd_status
from localkube.api.authn import Authenticator, Keys, impersonated
from localkube.api.errors import ApiError
from localkube.api.meta import get_path, now, rfc3339, set_path
from localkube.api.resources import Registry, ResourceType, crd_resource_types
from localkube.api.responses import dumps, table_request, view
from localkube.api.responses import json_response as _json
from localkube.api.selectors import FieldSelector, LabelSelector, SelectorError
from localkube.api.store import Store

log = logging.getLogger(__name__)

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """What the API server needs to know (a subset of the process settings)."""

    state_dir: Path | None = None  # pods/log reads STATE_DIR/logs/<ns>/<pod>/<container>.log
    watch_history: int = 10_000  # events kept for watches to resume from
    bookmark_interval: float = 5.0  # seconds between BOOKMARK events on quiet watches
    pod_force_delete_after: float = 10.0  # seconds past a pod's grace period before removal
    event_ttl: float = 3600.0  # seconds an Event is kept after its last change (as Kubernetes)
    audit_log: Path | None = None  # JSON lines, one per request (audit.py)


@dataclass(frozen=True)
class Target:
    """What a request path names."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str | None


class ApiServer:
    def __init__(self, options: ServerOptions | None = None, *, keys: Keys | None = None) -> None:
        self.options = options or ServerOptions()
        self.registry = Registry()
        self.store = Store(history=self.options.watch_history)
        self.admission = Admission()
        self.authn = Authenticator(keys or Keys.generate(), self._service_account_uid)
        self.audit = audit.AuditLog(self.options.audit_log) if self.options.audit_log else None
        self.store.on_removed.append(self._on_removed)
        self.server_address = "127.0.0.1:6443"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------

    def bootstrap(self) -> None:
        """Create the namespaces every cluster has (those missing after a restore)."""
        ns_rt = self._rt("", "v1", "namespaces")
        for name in DEFAULT_NAMESPACES:
            if self.store.find(ns_rt, None, name) is None:
                obj = self.admission.admit(ns_rt, {"metadata": {"name": name}}, old=None)
                self.store.create(ns_rt, obj)
        for ns in self.store.select(ns_rt, None):
            self._ensure_default_service_account(ns["metadata"]["name"])

    def _ensure_default_service_account(self, namespace: str) -> None:
        """Every namespace has a ServiceAccount ``default`` (Kubernetes' serviceaccount
        controller makes it); pods without ``serviceAccountName`` run as it."""
        sa_rt = self._rt("", "v1", "serviceaccounts")
        if self.store.find(sa_rt, namespace, "default") is None:
            obj = self.admission.admit(sa_rt, {"metadata": {"name": "default",
                                                            "namespace": namespace}}, old=None)
            with contextlib.suppress(ApiError):
                self.store.create(sa_rt, obj)

    def _service_account_uid(self, namespace: str, name: str) -> str | None:
        sa = self.store.find(self._rt("", "v1", "serviceaccounts"), namespace, name)
        return None if sa is None else str(sa["metadata"].get("uid", ""))

    def policy(self) -> rbac.Policy:
        """The RBAC objects stored now."""
        def objs(plural: str) -> list[dict[str, Any]]:
            return self.store.select(self._rt(rbac_group, "v1", plural), None)
        rbac_group = "rbac.authorization.k8s.io"
        return rbac.Policy(roles=objs("roles"), cluster_roles=objs("clusterroles"),
                           role_bindings=objs("rolebindings"),
                           cluster_role_bindings=objs("clusterrolebindings"))

    def register_crd(self, crd: dict[str, Any]) -> None:
        self.registry.set_crd(crd["metadata"]["name"], crd_resource_types(crd))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._start_housekeeping)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _start_housekeeping(self, app: web.Application) -> None:
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    async def _shutdown(self, app: web.Application) -> None:
        self._stopping.set()
        self.store.close_all_watches()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.audit is not None:
            self.audit.close()

    async def _housekeeping(self) -> None:
        """Remove pods left terminating well past their grace period (no kubelet took
        them), and Events older than their time to live."""
        pods = self._rt("", "v1", "pods")
        event_types = [self._rt("", "v1", "events"), self._rt("events.k8s.io", "v1", "events")]
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            for ns, name in self.store.overdue_pods(slack=self.options.pod_force_delete_after):
                with contextlib.suppress(ApiError):
                    self.store.delete(pods, ns, name, grace_seconds=0)
            if ticks % 5 == 0:
                for rt in event_types:
                    for ns, name in self.store.expired(rt, self.options.event_ttl):
                        with contextlib.suppress(ApiError):
                            self.store.delete(rt, ns, name)

    def _rt(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self.registry.lookup(group, version, plural)
        assert rt is not None
        return rt

    def _on_removed(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.key == CRD_KEY:
            types = self.registry.remove_crd(obj["metadata"]["name"])
            for rt_gone in {t.key: t for t in types}.values():
                self.store.drop_type(rt_gone)

    # --- dispatch ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            if self.audit is not None and not request.get("localkube.audited"):
                self._audit(request, exc.code)
            return _json(exc.status(), exc.code)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path)
            err = ApiError(code=500, reason="InternalError", message=f"internal error: {exc}")
            return _json(err.status(), 500)

    # --- authentication, authorization, audit ------------------------------------

    def _user(self, request: web.Request) -> rbac.UserInfo:
        """Who asks: the bearer token's user (401 without a valid one, except on the public
        paths), or whom that user may and does impersonate."""
        user = self.authn.authenticate(request.headers)
        if user is None:
            if request.headers.get("Authorization"):
                raise _unauthorized()
            anonymous = rbac.UserInfo(name=rbac.ANONYMOUS, groups=(rbac.UNAUTHENTICATED,))
            if not rbac.Policy().allows(self._non_resource(request, anonymous)):
                raise _unauthorized()
            return anonymous
        target = impersonated(request.headers,
                              lambda name: list(request.headers.getall(name, [])))
        if target is None:
            return user
        policy = self.policy()
        sa = rbac.service_account_of(target.name)
        checks = [rbac.Attributes(user=user, verb="impersonate", resource="users",
                                  name=target.name)] if sa is None else [
            rbac.Attributes(user=user, verb="impersonate", resource="serviceaccounts",
                            namespace=sa[0], name=sa[1])]
        checks += [rbac.Attributes(user=user, verb="impersonate", resource="groups", name=g)
                   for g in request.headers.getall("Impersonate-Group", [])]
        for a in checks:
            if not policy.allows(a):
                raise _forbidden(a)
        return target

    @staticmethod
    def _non_resource(request: web.Request, user: rbac.UserInfo) -> rbac.Attributes:
        return rbac.Attributes(user=user, verb=request.method.lower().replace("head", "get"),
                               resource_request=False, path=request.path)

    def _authorize(self, request: web.Request, attrs: rbac.Attributes) -> None:
        request["localkube.attrs"] = attrs
        if not self.policy().allows(attrs):
            raise _forbidden(attrs)
        if attrs.verb == "watch" and self.audit is not None:
            # A watch may stream for minutes: it is recorded when allowed, not when it ends.
            self._audit(request, 200)
            request["localkube.audited"] = True

    def _audit(self, request: web.Request, code: int) -> None:
        assert self.audit is not None
        attrs = request.get("localkube.attrs")
        if attrs is None:
            attrs = self._non_resource(request, rbac.UserInfo(name=request.get(
                "localkube.user", rbac.ANONYMOUS)))
        decision = {401: "unauthenticated", 403: "forbid"}.get(code, "allow")
        self.audit.write(audit.record(attrs, code=code, decision=decision))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        user = self._user(request)
        request["localkube.user"] = user.name
        response = await self._route(request, user)
        if self.audit is not None and not request.get("localkube.audited"):
            self._audit(request, response.status)
            request["localkube.audited"] = True
        return response

    async def _route(self, request: web.Request, user: rbac.UserInfo) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        target: Target | None = None
        if len(parts) >= 3 and parts[0] in ("api", "apis"):
            with contextlib.suppress(ApiError, IndexError):
                if parts[0] == "api":
                    target = self._target("", parts[1], parts[2:])
                elif len(parts) >= 4:
                    target = self._target(parts[1], parts[2], parts[3:])
        if target is None:
            self._authorize(request, self._non_resource(request, user))
        else:
            self._authorize(request, rbac.Attributes(
                user=user, verb=rbac.request_verb(
                    request.method, has_name=target.name is not None,
                    watch=request.query.get("watch") in ("true", "1", "True")),
                api_group=target.rt.group, resource=target.rt.plural,
                subresource=target.sub or "",
                namespace=target.namespace or (target.name or "" if target.rt.key == (
                    "", "namespaces") else ""),
                name=target.name or ""))
        request["localkube.user_info"] = user
        return await self._routed(request)

    async def _routed(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez",
                                    "/openapi/v2", "/openapi/v3", "/readyz", "/version",
                                    "/localkube/v1/prometheus-sd", "/localkube/v1/stats"]})
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head == "version":
            return _json(discovery.version_info())
        if head == "openapi":
            return self._openapi(request, parts[1:])
        if head == "localkube" and parts[1:] == ["v1", "prometheus-sd"]:
            return self._prometheus_sd(request)
        if head == "localkube" and parts[1:] == ["v1", "stats"]:
            return _json({"resourceVersion": str(self.store.rv),
                          "objects": self.store.count(),
                          "watches": self.store.watcher_count()})
        if head in ("api", "apis") and len(parts) == 1 and discovery.wants_aggregated(
                request.headers.get("Accept", "")):
            return web.Response(
                body=dumps(discovery.aggregated(self.registry, core=head == "api")),
                headers={"Content-Type": discovery.AGGREGATED_V2})
        if head == "api":
            if len(parts) == 1:
                return _json(discovery.api_versions(self.server_address))
            group, version, rest = "", parts[1], parts[2:]
        elif head == "apis":
            if len(parts) == 1:
                return _json(discovery.api_group_list(self.registry))
            if len(parts) == 2:
                doc = discovery.api_group(self.registry, parts[1])
                if doc is None:
                    raise errors.resource_not_found(f"no API group {parts[1]!r}")
                return _json(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.resource_not_found(f"no such path {request.path!r}")
        if not rest:
            doc = discovery.api_resource_list(self.registry, group, version)
            if doc is None:
                gv = f"{group}/{version}" if group else version
                raise errors.resource_not_found(f"localkube does not serve {gv}")
            return _json(doc)
        target = self._target(group, version, rest)
        return await self._verb(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        gv = f"{group}/{version}" if group else version
        if not rest:
            raise errors.resource_not_found(f"no such path under {gv}")
        if rest[0] == "watch":
            raise errors.resource_not_found("the /watch/ paths are deprecated; use ?watch=true")
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise errors.resource_not_found(f"no such path under {gv}")
        plural = rest[0]
        rt = self.registry.lookup(group, version, plural)
        if rt is None:
            served = ", ".join(sorted(t.plural for t in self.registry.in_group_version(
                group, version)))
            if not served:
                raise errors.resource_not_found(
                    f"localkube does not serve the API group version {gv} ({plural})")
            raise errors.resource_not_found(
                f"localkube does not serve {plural!r} in {gv}; it serves: {served}")
        if namespace is not None and not rt.namespaced:
            raise errors.resource_not_found(f"{rt.qualified} is not namespaced")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if name is not None and rt.namespaced and namespace is None:
            raise errors.resource_not_found(f"{rt.qualified} is namespaced: give a namespace")
        if sub is not None and sub not in rt.subresources():
            raise errors.resource_not_found(f"{rt.qualified} has no subresource {sub!r}")
        return Target(rt, namespace, name, sub)

    async def _verb(self, request: web.Request, t: Target) -> web.StreamResponse:
        m = request.method
        what = f"{t.rt.qualified}{'/' + t.sub if t.sub else ''}"
        handlers: dict[tuple[str | None, str], Callable[[web.Request, Target],
                                                         Awaitable[web.StreamResponse]]]
        if t.rt.review:
            handlers = {(None, "POST"): self._review} if t.name is None else {}
        elif t.name is None:
            handlers = {(None, "GET"): self._list, (None, "POST"): self._create,
                        (None, "DELETE"): self._delete_collection}
        else:
            handlers = {
                (None, "GET"): self._get, (None, "PUT"): self._replace,
                (None, "PATCH"): self._patch, (None, "DELETE"): self._delete,
                ("status", "GET"): self._get, ("status", "PUT"): self._replace,
                ("status", "PATCH"): self._patch,
                ("scale", "GET"): self._get_scale, ("scale", "PUT"): self._replace_scale,
                ("scale", "PATCH"): self._patch_scale,
                ("log", "GET"): self._log, ("binding", "POST"): self._bind,
                ("token", "POST"): self._token_request,
            }
        handler = handlers.get((t.sub, m))
        if handler is None:
            raise errors.method_not_allowed(m, what)
        return await handler(request, t)

    # --- request helpers ------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        if request.content_type == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(await request.read())
            except protobuf.ProtobufError as exc:
                raise ApiError(code=415, reason="UnsupportedMediaType",
                               message=str(exc)) from None
        if "protobuf" in request.content_type or "cbor" in request.content_type:
            raise ApiError(code=415, reason="UnsupportedMediaType",
                           message=f"localkube reads JSON and YAML bodies, not "
                           f"{request.content_type}")
        raw = await request.read()
        if not raw:
            raise errors.bad_request("the request has no body")
        try:
            if request.content_type.endswith("yaml"):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the body is not valid JSON/YAML: {exc}") from None

    async def _object_body(self, request: web.Request, t: Target) -> dict[str, Any]:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a JSON object")
        self._check_kind(t.rt, body)
        md = body.get("metadata")
        if md is None:
            md = body["metadata"] = {}
        if not isinstance(md, dict):
            raise errors.bad_request("metadata must be an object")
        for key in ("name", "generateName", "namespace"):
            if key in md and not isinstance(md[key], str):
                raise errors.bad_request(f"metadata.{key} must be a string")
        if t.rt.namespaced and t.namespace is not None:
            if md.get("namespace") and md["namespace"] != t.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace "
                    f"sent on the request ({md['namespace']!r} != {t.namespace!r})")
            md["namespace"] = t.namespace
        return body

    def _check_kind(self, rt: ResourceType, body: dict[str, Any]) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind is not None and kind != rt.kind:
            raise errors.bad_request(
                f"the kind {kind!r} of the object does not match the resource "
                f"{rt.qualified} ({rt.kind})")
        if api_version is not None and api_version.split("/")[0] != (
                rt.api_version.split("/")[0]) and rt.group:
            raise errors.bad_request(
                f"the apiVersion {api_version!r} of the object does not match {rt.api_version}")

    def _selectors(self, request: web.Request) -> tuple[LabelSelector, FieldSelector]:
        try:
            return (LabelSelector.parse(request.query.get("labelSelector")),
                    FieldSelector.parse(request.query.get("fieldSelector")))
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from None

    def _respond(self, request: web.Request, rt: ResourceType, obj: dict[str, Any],
                 status: int = 200) -> web.Response:
        obj = view(rt, obj)
        table = table_request(request)
        if table is not None:
            return _json(tables.to_table(rt, [obj], include=table,
                                         resource_version=obj["metadata"].get(
                                             "resourceVersion", "")), status)
        return _json(obj, status)

    def _ensure_namespace(self, rt: ResourceType, namespace: str | None) -> None:
        if not rt.namespaced or namespace is None:
            return
        ns = self.store.find(self._rt("", "v1", "namespaces"), None, namespace)
        if ns is None:
            raise errors.not_found(group="", plural="namespaces", name=namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(code=403, reason="Forbidden",
                           message=f"unable to create new content in namespace {namespace} "
                           "because it is being terminated", name=namespace, kind="namespaces")

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
               request: web.Request) -> dict[str, Any]:
        existing = self.store.select(rt, None) if rt.key == ("", "services") else ()
        md = obj.get("metadata") or {}
        for key in ("name", "generateName", "namespace"):
            if key in md and not isinstance(md[key], str):
                raise errors.bad_request(f"metadata.{key} must be a string")
        try:
            return self.admission.admit(
                rt, obj, old=old, existing=existing,
                strict=request.query.get("fieldValidation") == "Strict")
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            # A field of the wrong type somewhere (a string where an object belongs).
            raise errors.bad_request(
                f"the object does not have the shape of a {rt.kind}: {exc!r}") from None

    # --- verbs -----------------------------------------------------------------

    async def _create(self, request: web.Request, t: Target) -> web.StreamResponse:
        if t.rt.namespaced and t.namespace is None:
            raise errors.method_not_allowed("POST", f"{t.rt.qualified} without a namespace")
        body = await self._object_body(request, t)
        return self._create_object(request, t, body)

    def _create_object(self, request: web.Request, t: Target,
                       body: dict[str, Any]) -> web.Response:
        rt = t.rt
        self._ensure_namespace(rt, t.namespace)
        md = body["metadata"]
        generate = md.get("generateName")
        dry_run = request.query.get("dryRun") == "All"
        for _attempt in range(8):
            if not md.get("name") and generate:
                suffix = "".join(random.choices(_GENERATE_ALPHABET, k=5))  # noqa: S311
                body = {**body, "metadata": {**md, "name": generate + suffix}}
            obj = self._admit(rt, body, None, request)
            if dry_run:
                if self.store.find(rt, t.namespace, obj["metadata"]["name"]) is not None:
                    raise errors.already_exists(group=rt.group, plural=rt.plural,
                                                name=obj["metadata"]["name"])
                obj = {**obj, "apiVersion": rt.api_version, "kind": rt.kind}
                return self._respond(request, rt, obj, 201)
            try:
                created = self.store.create(rt, obj)
            except ApiError as exc:
                if exc.reason == "AlreadyExists" and generate and not md.get("name"):
                    continue
                raise
            if rt.key == CRD_KEY:
                created = self._establish_crd(created)
            if rt.key == ("", "namespaces"):
                self._ensure_default_service_account(created["metadata"]["name"])
            return self._respond(request, rt, created, 201)
        raise ApiError(code=409, reason="AlreadyExists",
                       message=f"could not find a free name for generateName {generate!r}")

    def _establish_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        rt = self._rt(*CRD_KEY[:1], "v1", CRD_KEY[1])
        status = crd_status(crd, rfc3339(now()))
        updated = self.store.update(rt, {**crd, "status": status}, subresource="status")
        self.register_crd(updated)
        return updated

    async def _get(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        obj = self.store.get(t.rt, t.namespace, t.name)
        return self._respond(request, t.rt, obj)

    async def _list(self, request: web.Request, t: Target) -> web.StreamResponse:
        if request.query.get("watch") in ("true", "1", "True"):
            return await self._watch(request, t)
        labels, fields = self._selectors(request)
        items = self.store.select(t.rt, t.namespace, labels=labels, fields=fields)
        rv = str(self.store.rv)
        cont = ""
        token = request.query.get("continue")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = (after["ns"], after["name"])
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("invalid continue token") from None
            items = [o for o in items if (o["metadata"].get("namespace", ""),
                                          o["metadata"]["name"]) > start]
        limit = request.query.get("limit")
        remaining = 0
        if limit and limit.isdigit() and int(limit) > 0 and len(items) > int(limit):
            remaining = len(items) - int(limit)
            items = items[:int(limit)]
            last = items[-1]["metadata"]
            cont = base64.urlsafe_b64encode(dumps(
                {"ns": last.get("namespace", ""), "name": last["name"]})).decode()
        table = table_request(request)
        if table is not None:
            return _json(tables.to_table(t.rt, items, include=table, resource_version=rv,
                                         continue_token=cont))
        md: dict[str, Any] = {"resourceVersion": rv}
        if cont:
            md["continue"] = cont
            md["remainingItemCount"] = remaining
        return _json({"kind": f"{t.rt.kind}List", "apiVersion": t.rt.api_version,
                      "metadata": md, "items": [view(t.rt, o) for o in items]})

    async def _replace(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        body = await self._object_body(request, t)
        if body["metadata"].get("name", t.name) != t.name:
            raise errors.bad_request(
                f"the name of the object ({body['metadata']['name']}) does not match the "
                f"name on the URL ({t.name})")
        body["metadata"]["name"] = t.name
        return self._update(request, t, body)

    def _update(self, request: web.Request, t: Target, new: dict[str, Any]) -> web.Response:
        assert t.name is not None
        old = self.store.get(t.rt, t.namespace, t.name)
        new = {**new, "apiVersion": old.get("apiVersion"), "kind": old.get("kind")}
        merged = _split(t.rt, old, new, t.sub)
        obj = self._admit(t.rt, merged, old, request)
        if request.query.get("dryRun") == "All":
            return self._respond(request, t.rt, obj)
        updated = self.store.update(t.rt, obj, subresource=t.sub)
        if t.rt.key == CRD_KEY and t.sub is None and self.store.find(
                t.rt, None, t.name) is not None:
            updated = self._establish_crd(updated)
        return self._respond(request, t.rt, updated)

    async def _patch(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        ctype = request.content_type
        body = await self._body(request)
        old = self.store.find(t.rt, t.namespace, t.name)
        if old is None:
            if ctype == patching.APPLY_PATCH and t.sub is None and isinstance(body, dict):
                body.setdefault("metadata", {})["name"] = t.name
                if t.namespace:
                    body["metadata"]["namespace"] = t.namespace
                self._check_kind(t.rt, body)
                return self._create_object(request, t, body)
            raise errors.not_found(group=t.rt.group, plural=t.rt.plural, name=t.name)
        try:
            patched = patching.apply_patch(old, body, ctype)
        except patching.PatchError as exc:
            if "unsupported patch type" in str(exc):
                raise ApiError(code=415, reason="UnsupportedMediaType",
                               message=f"the body of the request was in an unknown format - "
                               f"accepted media types include: {patching.JSON_PATCH}, "
                               f"{patching.MERGE_PATCH}, {patching.STRATEGIC_MERGE_PATCH}, "
                               f"{patching.APPLY_PATCH}") from None
            raise ApiError(code=422, reason="Invalid", message=f"the patch cannot be applied: "
                           f"{exc}") from None
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise errors.bad_request("the patched object is not an object with metadata")
        if patched["metadata"].get("name") != t.name:
            raise errors.bad_request("a patch cannot change metadata.name")
        if t.namespace is not None:
            patched["metadata"]["namespace"] = t.namespace
        return self._update(request, t, patched)

    async def _delete(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        opts = await self._delete_options(request)
        if request.query.get("dryRun") == "All" or "All" in (opts.get("dryRun") or []):
            return _json(view(t.rt, self.store.get(t.rt, t.namespace, t.name)))
        obj, gone = self.store.delete(
            t.rt, t.namespace, t.name, propagation=opts.get("propagationPolicy"),
            grace_seconds=opts.get("gracePeriodSeconds"),
            precondition_uid=(opts.get("preconditions") or {}).get("uid"),
            precondition_rv=(opts.get("preconditions") or {}).get("resourceVersion"),
        )
        if gone:
            return _json(obj if t.rt.key in (("", "pods"),) or t.rt.custom else
                         errors.status_success(name=t.name, group=t.rt.group,
                                               kind=t.rt.plural, uid=obj["metadata"]["uid"]))
        return _json(obj, 202 if obj["metadata"].get("finalizers") else 200)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                raise errors.bad_request("DeleteOptions are not valid JSON") from None
            if isinstance(body, dict):
                opts.update(body)
        q = request.query
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = q["gracePeriodSeconds"]
        if opts.get("orphanDependents") is True and "propagationPolicy" not in opts:
            opts["propagationPolicy"] = "Orphan"
        pol = opts.get("propagationPolicy")
        if pol is not None and pol not in ("Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"unknown propagationPolicy {pol!r}: use Background, "
                                     "Foreground or Orphan")
        if opts.get("gracePeriodSeconds") is not None:
            try:
                opts["gracePeriodSeconds"] = int(opts["gracePeriodSeconds"])
            except (TypeError, ValueError):
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        return opts

    async def _delete_collection(self, request: web.Request, t: Target) -> web.StreamResponse:
        labels, fields = self._selectors(request)
        opts = await self._delete_options(request)
        items = self.store.select(t.rt, t.namespace, labels=labels, fields=fields)
        out = []
        for obj in items:
            md = obj["metadata"]
            if self.store.find(t.rt, md.get("namespace"), md["name"]) is None:
                continue
            deleted, _ = self.store.delete(
                t.rt, md.get("namespace"), md["name"],
                propagation=opts.get("propagationPolicy"),
                grace_seconds=opts.get("gracePeriodSeconds"))
            out.append(deleted)
        return _json({"kind": f"{t.rt.kind}List", "apiVersion": t.rt.api_version,
                      "metadata": {"resourceVersion": str(self.store.rv)}, "items": out})

    async def _review(self, request: web.Request, t: Target) -> web.StreamResponse:
        """Access and identity reviews, answered by the same authorizer as requests."""
        if request.content_type == "application/vnd.kubernetes.protobuf":
            body: dict[str, Any] = protobuf_review(await request.read())
        else:
            body = await self._object_body(request, t)
        user: rbac.UserInfo = request["localkube.user_info"]
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise errors.bad_request("spec must be an object")
        policy = self.policy()
        if t.rt.kind == "SubjectAccessReview":
            if not spec.get("user") and not spec.get("groups"):
                raise errors.bad_request("a SubjectAccessReview needs spec.user or spec.groups")
            user = rbac.UserInfo(name=str(spec.get("user") or ""),
                                 groups=tuple(str(g) for g in spec.get("groups") or []),
                                 uid=str(spec.get("uid") or ""))
        if t.rt.kind in ("SelfSubjectAccessReview", "SubjectAccessReview"):
            attrs = _review_attributes(spec, user)
            allowed = policy.allows(attrs)
            status: dict[str, Any] = {"allowed": allowed}
            if allowed:
                status["reason"] = "allowed by RBAC" if rbac.MASTERS not in user.groups else (
                    "system:masters may do everything")
        elif t.rt.kind == "SelfSubjectRulesReview":
            namespace = str(spec.get("namespace") or "")
            if rbac.MASTERS in user.groups:
                rules = [rbac.Rule(verbs=("*",), api_groups=("*",), resources=("*",)),
                         rbac.Rule(verbs=("*",), non_resource_urls=("*",))]
            else:
                rules = list(dict.fromkeys([*rbac.PUBLIC_RULES,
                                            *policy.rules_for(user, namespace)]))
            status = {"resourceRules": [r.to_dict() for r in rules if not r.non_resource_urls],
                      "nonResourceRules": [r.to_dict() for r in rules if r.non_resource_urls],
                      "incomplete": False}
        else:
            status = {"userInfo": user.to_dict()}
        out = {**body, "apiVersion": t.rt.api_version, "kind": t.rt.kind, "status": status}
        return _json(out, 201)

    async def _token_request(self, request: web.Request, t: Target) -> web.StreamResponse:
        """``serviceaccounts/<name>/token``: a token for the ServiceAccount (TokenRequest)."""
        assert t.name is not None
        assert t.namespace is not None
        body = await self._body(request) if await request.read() else {}
        if not isinstance(body, dict):
            raise errors.bad_request("a TokenRequest must be an object")
        sa = self.store.get(t.rt, t.namespace, t.name)
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            raise errors.bad_request("spec.expirationSeconds must be an integer of at least 600")
        token = self.authn.issue(t.namespace, t.name, str(sa["metadata"]["uid"]))
        expires = rfc3339(now() + datetime.timedelta(seconds=seconds))
        return _json({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                      "metadata": {"name": t.name, "namespace": t.namespace},
                      "spec": {**spec, "expirationSeconds": seconds},
                      "status": {"token": token, "expirationTimestamp": expires}}, 201)

    # --- scale -------------------------------------------------------------------

    def _scale_of(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        assert rt.scale is not None
        md = obj["metadata"]
        selector: Any = get_path(obj, rt.scale.label_selector) if rt.scale.label_selector else None
        if isinstance(selector, dict):
            selector = str(LabelSelector.from_object(selector))
        status: dict[str, Any] = {"replicas": _as_int(get_path(obj, rt.scale.status_replicas))}
        if selector:
            status["selector"] = selector
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                            "creationTimestamp") if k in md},
            "spec": {"replicas": _as_int(get_path(obj, rt.scale.spec_replicas))},
            "status": status,
        }

    async def _get_scale(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        return _json(self._scale_of(t.rt, self.store.get(t.rt, t.namespace, t.name)))

    async def _replace_scale(self, request: web.Request, t: Target) -> web.StreamResponse:
        body = await self._body(request)
        return self._set_scale(request, t, body)

    async def _patch_scale(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        body = await self._body(request)
        current = self._scale_of(t.rt, self.store.get(t.rt, t.namespace, t.name))
        try:
            scale = patching.apply_patch(current, body, request.content_type)
        except patching.PatchError as exc:
            raise errors.bad_request(f"the patch cannot be applied: {exc}") from None
        return self._set_scale(request, t, scale)

    def _set_scale(self, request: web.Request, t: Target, scale: Any) -> web.Response:
        assert t.name is not None
        assert t.rt.scale is not None
        if not isinstance(scale, dict):
            raise errors.bad_request("a Scale must be an object")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(group="autoscaling", kind="Scale", name=t.name, causes=[
                errors.Cause(reason="FieldValueInvalid",
                             message=f"Invalid value: {replicas!r}: must be greater than or "
                             "equal to 0", field="spec.replicas")])
        old = self.store.get(t.rt, t.namespace, t.name)
        new = json.loads(dumps(old))
        set_path(new, t.rt.scale.spec_replicas, replicas)
        new["metadata"]["resourceVersion"] = (scale.get("metadata") or {}).get(
            "resourceVersion") or old["metadata"]["resourceVersion"]
        obj = self._admit(t.rt, new, old, request)
        updated = self.store.update(t.rt, obj)
        return _json(self._scale_of(t.rt, updated))

    # --- pods/log and pods/binding -----------------------------------------------

    async def _log(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        pod = self.store.get(t.rt, t.namespace, t.name)
        uid = pod["metadata"]["uid"]

        def same_pod_exists() -> bool:
            current = self.store.find(t.rt, t.namespace, t.name or "")
            return current is not None and current["metadata"]["uid"] == uid

        return await podlogs.serve(request, pod, state_dir=self.options.state_dir,
                                   same_pod_exists=same_pod_exists, stopping=self._stopping)

    async def _bind(self, request: web.Request, t: Target) -> web.StreamResponse:
        assert t.name is not None
        body = await self._body(request)
        node = ((body or {}).get("target") or {}).get("name") if isinstance(body, dict) else None
        if not node:
            raise errors.bad_request("a Binding needs target.name (the node)")
        pod = self.store.get(t.rt, t.namespace, t.name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current and current != node:
            raise errors.conflict(group="", plural="pods", name=t.name,
                                  why=f"pod {t.name} is already assigned to node {current!r}")
        new = json.loads(dumps(pod))
        new["spec"]["nodeName"] = node
        self.store.update(t.rt, new)
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {},
                      "status": "Success", "code": 201}, 201)

    # --- watch -------------------------------------------------------------------

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        labels, fields = self._selectors(request)
        return await watching.stream(request, self.store, t.rt, t.namespace, labels=labels,
                                     fields=fields,
                                     bookmark_interval=self.options.bookmark_interval)

    # --- openapi and prometheus ----------------------------------------------------

    def _openapi(self, request: web.Request, rest: list[str]) -> web.Response:
        if rest == ["v2"]:
            return web.Response(body=openapi.v2_protobuf(),
                                content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        if rest == ["v3"]:
            return _json(openapi.v3_index(self.registry))
        if rest[:1] == ["v3"] and len(rest) > 1:
            doc = openapi.v3_document(self.registry, "/".join(rest[1:]))
            if doc is None:
                raise errors.resource_not_found(f"no OpenAPI v3 document for {'/'.join(rest[1:])}")
            return _json(doc)
        raise errors.resource_not_found("no such OpenAPI document")

    def _prometheus_sd(self, request: web.Request) -> web.Response:
        labels, fields = self._selectors(request)
        namespace = request.query.get("namespace") or None
        pods = self.store.select(self._rt("", "v1", "pods"), namespace, labels=labels,
                               fields=fields)
        include_unready = request.query.get("ready") in ("any", "false", "all")
        return _json(promsd.target_groups(pods, ready_only=not include_unready,
                                          port_name=request.query.get("port")))


def _unauthorized() -> ApiError:
    return ApiError(code=401, reason="Unauthorized", message="Unauthorized")


def _forbidden(a: rbac.Attributes) -> ApiError:
    res = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
    message = rbac.forbidden_message(a)
    if a.resource_request and a.name:
        return ApiError(code=403, reason="Forbidden",
                        message=f'{res} "{a.name}" is forbidden: {message}',
                        name=a.name, group=a.api_group, kind=a.resource)
    if a.resource_request:
        return ApiError(code=403, reason="Forbidden", message=f"{res} is forbidden: {message}",
                        group=a.api_group, kind=a.resource)
    return ApiError(code=403, reason="Forbidden", message=f"forbidden: {message}")


def _review_attributes(spec: dict[str, Any], user: rbac.UserInfo) -> rbac.Attributes:
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict):
        return rbac.Attributes(user=user, verb=str(ra.get("verb") or ""),
                               api_group=str(ra.get("group") or ""),
                               resource=str(ra.get("resource") or ""),
                               subresource=str(ra.get("subresource") or ""),
                               namespace=str(ra.get("namespace") or ""),
                               name=str(ra.get("name") or ""))
    nra = spec.get("nonResourceAttributes")
    if isinstance(nra, dict):
        return rbac.Attributes(user=user, verb=str(nra.get("verb") or ""),
                               resource_request=False, path=str(nra.get("path") or ""))
    raise errors.bad_request("an access review needs spec.resourceAttributes or "
                             "spec.nonResourceAttributes")


def protobuf_review(raw: bytes) -> dict[str, Any]:
    """An access review sent as protobuf (kubectl auth can-i): its spec."""
    try:
        return protobuf.decode(raw)
    except protobuf.ProtobufError as exc:
        raise ApiError(code=415, reason="UnsupportedMediaType", message=str(exc)) from None


def _split(rt: ResourceType, old: dict[str, Any], new: dict[str, Any],
           sub: str | None) -> dict[str, Any]:
    """What an update may change: status only through /status when there is one."""
    if sub == "status":
        merged = {k: v for k, v in old.items() if k != "status"}
        if "status" in new:
            merged["status"] = new["status"]
        rv = (new.get("metadata") or {}).get("resourceVersion")
        merged["metadata"] = {**old["metadata"], "resourceVersion": rv or
                              old["metadata"]["resourceVersion"]}
        return merged
    if rt.status:
        merged = {k: v for k, v in new.items() if k != "status"}
        if "status" in old:
            merged["status"] = old["status"]
        return merged
    return new


def _as_int(value: Any) -> int:
    """A replica count as the scale subresource shows it (0 when absent or not a number)."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
