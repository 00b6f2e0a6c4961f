"""Object storage with Kubernetes semantics, and the watch fan-out.

One global, monotonic resourceVersion counts every committed change; each
commit appends one event to a bounded history that watches resume from. A
watch from a resourceVersion older than the history answers 410 Expired, and
so does one from a resourceVersion this store never handed out (a client of a
previous run, after a restart that lost changes): the client must list again.
With persistence, numbers are reserved durably in blocks before they are handed
out (``reserve_rvs``), so a restart never hands out a number twice, even after
a crash between two saves of the objects.

Stored objects are never changed in place once committed: every write builds
a new dict, so readers may serialize what they get without copying it.

Deletion follows Kubernetes: an object with finalizers gets a
``deletionTimestamp`` and stays until its finalizers are removed; pods bound to
a node get a grace period for the kubelet to stop them; dependents (through
``ownerReferences``) are deleted in the background, in the foreground (the
owner waits, finalizer ``foregroundDeletion``) or orphaned.

Everything here is synchronous: on one event loop each call is atomic.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from localkube.api import errors
from localkube.api.meta import now, parse_time, rfc3339
from localkube.api.resources import ResourceType
from localkube.api.selectors import FieldSelector, LabelSelector

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)
EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Propagation = Literal["Background", "Foreground", "Orphan"]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


@dataclass(eq=False)
class Event:
    """One committed change."""

    rv: int
    type: EventType
    key: Key
    obj: dict[str, Any]
    old: dict[str, Any] | None = None
    encoded: dict[str, bytes] = field(default_factory=dict)  # per event type, cached


Sink = Callable[[EventType, Event], bool]


@dataclass(eq=False)
class Watcher:
    """One watch: its filter, and where its events go.

    Events wait in ``queue`` until the stream has sent what came first (initial
    ADDED events, a replayed history); the stream then sets ``sink``, and later
    events go out from the commit itself, without a task switch per watcher. A
    sink that returns False (the client is gone) or fails closes the watch.
    """

    key: Key
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[tuple[EventType, Event] | None] = field(default_factory=asyncio.Queue)
    sink: Sink | None = None

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        md = obj.get("metadata", {})
        if self.namespace is not None and md.get("namespace") != self.namespace:
            return False
        return self.labels.matches(md.get("labels")) and self.fields.matches(obj)

    def offer(self, event: Event) -> None:
        now_in = self._matches(event.obj)
        if event.type == "DELETED":
            if now_in:
                self._deliver("DELETED", event)
            return
        was_in = self._matches(event.old) if event.type == "MODIFIED" else False
        if now_in and was_in:
            self._deliver("MODIFIED", event)
        elif now_in:
            self._deliver("ADDED", event)
        elif was_in:
            # Moved out of the selection: to this watcher it is gone.
            self._deliver("DELETED", event)

    def _deliver(self, etype: EventType, event: Event) -> None:
        sink = self.sink
        if sink is None:
            self.queue.put_nowait((etype, event))
            return
        try:
            ok = sink(etype, event)
        except Exception:
            log.exception("a watch stream failed; closing it")
            ok = False
        if not ok:
            self.close()

    def close(self) -> None:
        self.sink = None
        self.queue.put_nowait(None)


def _obj_key(obj: dict[str, Any]) -> ObjKey:
    md = obj["metadata"]
    return (md.get("namespace") or "", md["name"])


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Store:
    def __init__(self, *, history: int = 10_000) -> None:
        self.rv = 0
        self._history: deque[Event] = deque()
        self._history_size = max(1, history)
        self._floor = 0  # watches from below this resourceVersion are expired
        self._objects: dict[Key, dict[ObjKey, dict[str, Any]]] = {}
        self._types: dict[Key, ResourceType] = {}
        self._uids: dict[str, tuple[Key, ObjKey]] = {}
        self._dependents: dict[str, set[tuple[Key, ObjKey]]] = {}
        self._watchers: dict[Key, set[Watcher]] = {}
        # Called after an object is removed for good (CRD teardown, for one).
        self.on_removed: list[Callable[[ResourceType, dict[str, Any]], None]] = []
        # Called after every commit (persistence marks itself dirty).
        self.on_commit: list[Callable[[], None]] = []
        # Given the next resourceVersion, records durably a limit at least as high and
        # returns it; called before a number above the last limit is handed out.
        self.reserve_rvs: Callable[[int], int] | None = None
        self._rv_limit = 0

    # --- reading ------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._objects.get(rt.key, {}).get((namespace or "", name))
        if obj is None:
            raise errors.not_found(group=rt.group, plural=rt.plural, name=name)
        return obj

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._objects.get(rt.key, {}).get((namespace or "", name))

    def select(
        self, rt: ResourceType, namespace: str | None, *,
        labels: LabelSelector | None = None, fields: FieldSelector | None = None,
    ) -> list[dict[str, Any]]:
        """Matching objects, sorted by namespace then name."""
        bucket = self._objects.get(rt.key, {})
        items: Iterable[tuple[ObjKey, dict[str, Any]]]
        name = fields.exact("metadata.name") if fields else None
        if name is not None and namespace is not None:
            obj = bucket.get((namespace, name))
            items = [((namespace, name), obj)] if obj is not None else []
        else:
            items = bucket.items()
        out = []
        for (ns, _), obj in items:
            if namespace is not None and ns != namespace:
                continue
            if labels and not labels.matches(obj["metadata"].get("labels")):
                continue
            if fields and not fields.matches(obj):
                continue
            out.append(obj)
        out.sort(key=_obj_key)
        return out

    def count(self) -> int:
        return sum(len(b) for b in self._objects.values())

    def namespace_is_empty(self, namespace: str) -> bool:
        return not any(ns == namespace for bucket in self._objects.values() for ns, _ in bucket)

    def exists_uid(self, uid: str) -> bool:
        return uid in self._uids

    # --- committing ---------------------------------------------------------

    def _commit(self, rt: ResourceType, etype: EventType, obj: dict[str, Any],
                old: dict[str, Any] | None) -> dict[str, Any]:
        if self.reserve_rvs is not None and self.rv + 1 > self._rv_limit:
            self._rv_limit = self.reserve_rvs(self.rv + 1)
        self.rv += 1
        md = dict(obj["metadata"])
        md["resourceVersion"] = str(self.rv)
        obj = {**obj, "metadata": md}
        k = _obj_key(obj)
        bucket = self._objects.setdefault(rt.key, {})
        self._types[rt.key] = rt
        if old is not None:
            self._unindex(rt.key, k, old)
        if etype == "DELETED":
            bucket.pop(k, None)
        else:
            bucket[k] = obj
            self._index(rt.key, k, obj)
        event = Event(self.rv, etype, rt.key, obj, old)
        self._history.append(event)
        if len(self._history) > self._history_size:
            self._floor = self._history.popleft().rv
        for w in self._watchers.get(rt.key, ()):
            w.offer(event)
        for hook in self.on_commit:
            hook()
        return obj

    def _index(self, key: Key, k: ObjKey, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        self._uids[md["uid"]] = (key, k)
        for ref in md.get("ownerReferences") or ():
            if isinstance(ref, dict) and "uid" in ref:
                self._dependents.setdefault(ref["uid"], set()).add((key, k))

    def _unindex(self, key: Key, k: ObjKey, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        self._uids.pop(md.get("uid", ""), None)
        for ref in md.get("ownerReferences") or ():
            if isinstance(ref, dict) and "uid" in ref:
                deps = self._dependents.get(ref["uid"])
                if deps is not None:
                    deps.discard((key, k))
                    if not deps:
                        del self._dependents[ref["uid"]]

    def create(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new object (validated and defaulted by the caller)."""
        md = dict(obj.get("metadata") or {})
        ns = md.get("namespace") or ""
        if (ns, md["name"]) in self._objects.get(rt.key, {}):
            raise errors.already_exists(group=rt.group, plural=rt.plural, name=md["name"])
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = rfc3339(now())
        md["generation"] = 1
        for drop in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                     "selfLink"):
            md.pop(drop, None)
        if not rt.namespaced:
            md.pop("namespace", None)
        obj = {**obj, "apiVersion": rt.api_version, "kind": rt.kind, "metadata": md}
        return self._commit(rt, "ADDED", obj, None)

    def restore(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Put back an object read from disk, with its own metadata (no event)."""
        k = _obj_key(obj)
        self._objects.setdefault(rt.key, {})[k] = obj
        self._types[rt.key] = rt
        self._index(rt.key, k, obj)

    def set_resource_version(self, rv: int) -> None:
        """After a restore: continue counting from ``rv``; older watches are expired."""
        self.rv = max(self.rv, rv)
        self._floor = self.rv

    def update(
        self, rt: ResourceType, new: dict[str, Any], *, subresource: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object (PUT, and PATCH once applied).

        A ``metadata.resourceVersion`` in ``new`` must be the current one (409
        otherwise). With a status subresource, the main resource keeps the old
        status and ``status`` keeps everything but the status. An update that
        changes nothing commits nothing.
        """
        md_new = new.get("metadata") or {}
        name = md_new.get("name", "")
        old = self.get(rt, md_new.get("namespace"), name)
        old_md = old["metadata"]
        want_rv = md_new.get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != old_md["resourceVersion"]:
            raise errors.conflict(
                group=rt.group, plural=rt.plural, name=name,
                why="the object has been modified; please apply your changes to the "
                "latest version and try again",
            )
        if subresource == "status":
            merged = {**old}
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            md = dict(old_md)
        else:
            merged = dict(new)
            if rt.status:
                if "status" in old:
                    merged["status"] = old["status"]
                else:
                    merged.pop("status", None)
            md = dict(md_new)
            for keep in ("uid", "creationTimestamp", "deletionTimestamp",
                         "deletionGracePeriodSeconds", "generation", "namespace", "name"):
                if keep in old_md:
                    md[keep] = old_md[keep]
                else:
                    md.pop(keep, None)
            if old_md.get("deletionTimestamp") is not None:
                # Finalizers may only be removed from an object being deleted.
                pass
        md["resourceVersion"] = old_md["resourceVersion"]
        merged["metadata"] = md
        merged["apiVersion"] = old.get("apiVersion", rt.api_version)
        merged["kind"] = old.get("kind", rt.kind)
        if _spec_part(merged) != _spec_part(old):
            md["generation"] = int(old_md.get("generation", 1)) + 1
        if merged == old:
            return old
        if (md.get("deletionTimestamp") and not md.get("finalizers")
                and not md.get("deletionGracePeriodSeconds")
                and rt.key != ("", "namespaces")):
            # The last finalizer is gone (a pod in its grace period stays for its kubelet;
            # a namespace goes once it is empty).
            return self._remove(rt, merged)
        result = self._commit(rt, "MODIFIED", merged, old)
        if md.get("deletionTimestamp"):
            self._check_foreground(rt, result)
        return result

    def _set_metadata(self, rt: ResourceType, obj: dict[str, Any],
                      **changes: Any) -> dict[str, Any]:
        md = dict(obj["metadata"])
        for k, v in changes.items():
            if v is None:
                md.pop(k, None)
            else:
                md[k] = v
        return self._commit(rt, "MODIFIED", {**obj, "metadata": md}, obj)

    # --- deleting -----------------------------------------------------------

    def delete(
        self, rt: ResourceType, namespace: str | None, name: str, *,
        propagation: Propagation | None = None, grace_seconds: int | None = None,
        precondition_uid: str | None = None, precondition_rv: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Delete an object; return (the object as it is now, whether it is gone)."""
        obj = self.get(rt, namespace, name)
        md = obj["metadata"]
        if precondition_uid and precondition_uid != md["uid"]:
            raise errors.conflict(group=rt.group, plural=rt.plural, name=name,
                                  why=f"Precondition failed: UID in precondition: "
                                  f"{precondition_uid}, UID in object meta: {md['uid']}")
        if precondition_rv and precondition_rv != md["resourceVersion"]:
            raise errors.conflict(group=rt.group, plural=rt.plural, name=name,
                                  why=f"Precondition failed: ResourceVersion in precondition: "
                                  f"{precondition_rv}, ResourceVersion in object meta: "
                                  f"{md['resourceVersion']}")
        if propagation is None:
            fins = md.get("finalizers") or []
            propagation = ("Orphan" if ORPHAN in fins
                           else "Foreground" if FOREGROUND in fins else "Background")
        finalizers = list(md.get("finalizers") or [])
        if (propagation == "Foreground" and self._dependents.get(md["uid"])
                and FOREGROUND not in finalizers):
            finalizers.append(FOREGROUND)
        if propagation == "Orphan":
            self._orphan_dependents(md["uid"])
        if rt.key == ("", "namespaces"):
            return self._delete_namespace(rt, obj), False

        grace = self._grace(rt, obj, grace_seconds)
        if finalizers or grace:
            if md.get("deletionTimestamp") is None or (
                grace is not None and grace < int(md.get("deletionGracePeriodSeconds") or 0)
            ):
                when = now() + dt.timedelta(seconds=grace or 0)
                obj = self._set_metadata(
                    rt, obj, deletionTimestamp=rfc3339(when),
                    deletionGracePeriodSeconds=grace or 0, finalizers=finalizers or None,
                )
            elif finalizers != (md.get("finalizers") or []):
                obj = self._set_metadata(rt, obj, finalizers=finalizers or None)
            if not grace:
                if propagation == "Foreground":
                    self._delete_dependents(md["uid"])
                    obj = self.find(rt, namespace, name) or obj
                    self._check_foreground(rt, obj)
                if not finalizers:
                    return self._remove(rt, obj), True
            return obj, False
        return self._remove(rt, obj), True

    def _grace(self, rt: ResourceType, obj: dict[str, Any], asked: int | None) -> int | None:
        """Pods bound to a node get a grace period for the kubelet; nothing else does."""
        if rt.key != ("", "pods") or not (obj.get("spec") or {}).get("nodeName"):
            return None
        if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        if asked is not None:
            return max(0, asked)
        return int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        if md.get("deletionTimestamp") is None:
            md = {**md, "deletionTimestamp": rfc3339(now()), "deletionGracePeriodSeconds": 0}
            obj = {**obj, "metadata": md}
        final = self._commit(rt, "DELETED", obj, obj)
        for hook in self.on_removed:
            hook(rt, final)
        uid = md["uid"]
        self._collect_dependents(uid)
        for ref in md.get("ownerReferences") or ():
            owner = self._uids.get(ref.get("uid", "")) if isinstance(ref, dict) else None
            if owner is not None:
                okey, ok = owner
                orow = self._objects.get(okey, {}).get(ok)
                if orow is not None:
                    self._check_foreground(self._types[okey], orow)
        ns = md.get("namespace")
        if ns:
            self._maybe_finish_namespace(ns)
        return final

    def _collect_dependents(self, uid: str) -> None:
        """Background garbage collection: dependents without a living owner are deleted."""
        for key, k in sorted(self._dependents.get(uid, set())):
            dep = self._objects.get(key, {}).get(k)
            if dep is None:
                continue
            owners = [r.get("uid") for r in dep["metadata"].get("ownerReferences") or ()
                      if isinstance(r, dict)]
            if any(o != uid and o in self._uids for o in owners):
                continue
            if dep["metadata"].get("deletionTimestamp") is None or not dep["metadata"].get(
                "finalizers"
            ):
                self.delete(self._types[key], k[0] or None, k[1])

    _delete_dependents = _collect_dependents

    def _orphan_dependents(self, uid: str) -> None:
        for key, k in sorted(self._dependents.get(uid, set())):
            dep = self._objects.get(key, {}).get(k)
            if dep is None:
                continue
            refs = [r for r in dep["metadata"].get("ownerReferences") or ()
                    if not (isinstance(r, dict) and r.get("uid") == uid)]
            self._set_metadata(self._types[key], dep, ownerReferences=refs or None)

    def _check_foreground(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """A foreground deletion ends once the owner has no dependents left."""
        md = obj["metadata"]
        fins = md.get("finalizers") or []
        if md.get("deletionTimestamp") is None or FOREGROUND not in fins:
            return
        if self._dependents.get(md["uid"]):
            return
        rest = [f for f in fins if f != FOREGROUND]
        if rest:
            self._set_metadata(rt, obj, finalizers=rest)
        else:
            self._remove(rt, obj)

    # --- namespaces -------------------------------------------------------------

    def _delete_namespace(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Namespaces go Terminating, their objects are deleted, then they go."""
        name = obj["metadata"]["name"]
        if obj["metadata"].get("deletionTimestamp") is None:
            status = {**(obj.get("status") or {}), "phase": "Terminating"}
            md = {**obj["metadata"], "deletionTimestamp": rfc3339(now()),
                  "deletionGracePeriodSeconds": 0}
            obj = self._commit(rt, "MODIFIED", {**obj, "metadata": md, "status": status}, obj)
        for key in list(self._objects):
            ort = self._types[key]
            if not ort.namespaced:
                continue
            for ns, oname in [k for k in self._objects[key] if k[0] == name]:
                if self.find(ort, ns, oname) is not None:
                    self.delete(ort, ns, oname)
        self._maybe_finish_namespace(name)
        return self.find(rt, None, name) or obj

    def _maybe_finish_namespace(self, name: str) -> None:
        ns_key = ("", "namespaces")
        ns_obj = self._objects.get(ns_key, {}).get(("", name))
        if ns_obj is None or ns_obj["metadata"].get("deletionTimestamp") is None:
            return
        if self.namespace_is_empty(name):
            self._remove(self._types[ns_key], ns_obj)

    # --- housekeeping -----------------------------------------------------------

    def overdue_pods(self, *, slack: float) -> list[tuple[str, str]]:
        """Pods still here ``slack`` seconds after their grace period ended."""
        limit = now() - dt.timedelta(seconds=slack)
        out = []
        for (ns, name), obj in self._objects.get(("", "pods"), {}).items():
            when = parse_time(obj["metadata"].get("deletionTimestamp"))
            if when is not None and when < limit and not obj["metadata"].get("finalizers"):
                out.append((ns, name))
        return out

    def expired(self, rt: ResourceType, ttl: float) -> list[tuple[str, str]]:
        """Objects whose last change is older than ``ttl`` seconds (Events expire so)."""
        limit = now() - dt.timedelta(seconds=ttl)
        out = []
        for (ns, name), obj in self._objects.get(rt.key, {}).items():
            md = obj["metadata"]
            last = parse_time(obj.get("lastTimestamp") or obj.get("eventTime")
                              or md.get("creationTimestamp"))
            if last is not None and last < limit:
                out.append((ns, name))
        return out

    def snapshot(self) -> list[tuple[Key, dict[str, Any]]]:
        """Every object with its (group, plural), for persistence."""
        return [(key, obj) for key, bucket in self._objects.items() for obj in bucket.values()]

    def drop_type(self, rt: ResourceType) -> None:
        """Remove every object of a type (its CRD is gone)."""
        for ns, name in list(self._objects.get(rt.key, {})):
            obj = self._objects[rt.key].get((ns, name))
            if obj is not None:
                if obj["metadata"].get("finalizers"):
                    obj = self._set_metadata(rt, obj, finalizers=None)
                if self.find(rt, ns, name) is not None:
                    self._remove(rt, self.get(rt, ns, name))
        for w in list(self._watchers.get(rt.key, ())):
            w.close()

    # --- watching ---------------------------------------------------------------

    def watch(
        self, rt: ResourceType, namespace: str | None, *, labels: LabelSelector,
        fields: FieldSelector, since: int | None,
    ) -> Watcher:
        """Register a watch. ``since`` None: ADDED for each current object first."""
        w = Watcher(rt.key, namespace, labels, fields)
        if since is None:
            for obj in self.select(rt, namespace, labels=labels, fields=fields):
                w.queue.put_nowait(("ADDED", Event(int(obj["metadata"]["resourceVersion"]),
                                                   "ADDED", rt.key, obj)))
        else:
            if since < self._floor or since > self.rv:
                log.info("watch of %s from resourceVersion %d answered 410 (this store "
                         "has %d to %d)", rt.plural, since, self._floor, self.rv)
                what = "too old" if since < self._floor else "unknown"
                raise errors.expired(
                    f"{what} resource version: {since} ({self._floor + 1})"
                )
            for event in self._history:
                if event.rv > since and event.key == rt.key:
                    w.offer(event)
        self._watchers.setdefault(rt.key, set()).add(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        watchers = self._watchers.get(w.key)
        if watchers is not None:
            watchers.discard(w)

    def watcher_count(self) -> int:
        return sum(len(ws) for ws in self._watchers.values())

    def close_all_watches(self) -> None:
        for ws in self._watchers.values():
            for w in ws:
                w.close()
