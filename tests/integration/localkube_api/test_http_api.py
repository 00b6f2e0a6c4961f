"""The API over plain HTTP: discovery, Status errors, Table, watch details, OpenAPI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.localkube import admin_http, anonymous_http
from tests.integration.localkube_api.conftest import Localkube, eventually

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
def http(localkube: Localkube) -> Iterator[httpx.Client]:
    with admin_http(localkube.kubeconfig) as c:
        yield c


@pytest.fixture
def ns(http: httpx.Client) -> str:
    name = f"h-{uuid.uuid4().hex[:8]}"
    assert http.post("/api/v1/namespaces", json={"metadata": {"name": name}}).status_code == 201
    return name


def status(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body: dict[str, Any] = r.json()
    assert (body["kind"], body["status"], body["code"], body["reason"]) == (
        "Status", "Failure", code, reason)
    return body


def test_discovery(http: httpx.Client) -> None:
    assert http.get("/api").json()["versions"] == ["v1"]
    assert http.get("/version").json()["major"] == "1"
    groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
    assert {"apps", "apiextensions.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
            "events.k8s.io", "rbac.authorization.k8s.io", "autoscaling", "policy",
            "networking.k8s.io"} <= set(groups)
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    apps = {r["name"]: r for r in http.get("/apis/apps/v1").json()["resources"]}
    assert apps["deployments"]["shortNames"] == ["deploy"]
    assert apps["deployments"]["namespaced"] is True
    assert "watch" in apps["deployments"]["verbs"]
    assert apps["deployments/scale"]["kind"] == "Scale"
    assert apps["deployments/status"]["verbs"] == ["get", "patch", "update"]
    core = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
    assert {"pods", "pods/log", "pods/status", "services", "endpoints", "configmaps",
            "secrets", "serviceaccounts", "events", "namespaces"} <= set(core)
    assert core["namespaces"]["namespaced"] is False
    assert http.get("/apis/apps").json()["preferredVersion"]["groupVersion"] == "apps/v1"


def test_status_errors(http: httpx.Client, ns: str) -> None:
    status(http.get(f"/api/v1/namespaces/{ns}/configmaps/nope"), 404, "NotFound")
    body = status(http.get(f"/apis/apps/v1/namespaces/{ns}/statefulsets"), 404, "NotFound")
    assert "statefulsets" in body["message"]
    status(http.put(f"/api/v1/namespaces/{ns}/configmaps", json={}), 405, "MethodNotAllowed")
    status(http.post(f"/api/v1/namespaces/{ns}/configmaps", content=b"{not json",
                     headers={"Content-Type": "application/json"}), 400, "BadRequest")
    status(http.post(f"/api/v1/namespaces/{ns}/configmaps",
                     json={"kind": "Secret", "metadata": {"name": "x"}}), 400, "BadRequest")
    status(http.post(f"/api/v1/namespaces/{ns}/configmaps",
                     json={"metadata": {"name": "x", "namespace": "other"}}), 400, "BadRequest")
    status(http.post(f"/api/v1/namespaces/{ns}/configmaps", content=b"\x0a\x00",
                     headers={"Content-Type": "application/vnd.kubernetes.protobuf"}),
           415, "UnsupportedMediaType")
    http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "a"}})
    status(http.patch(f"/api/v1/namespaces/{ns}/configmaps/a", json={},
                      headers={"Content-Type": "application/xml"}), 415,
           "UnsupportedMediaType")
    status(http.patch(f"/api/v1/namespaces/{ns}/configmaps/a",
                      content=json.dumps([{"op": "test", "path": "/data", "value": 1}]),
                      headers={"Content-Type": "application/json-patch+json"}), 422, "Invalid")
    body = status(http.post(f"/api/v1/namespaces/{ns}/configmaps",
                            json={"metadata": {"name": "UPPER"}}), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    # Nothing was lost on the way: the one good object is still there, alone.
    names = [i["metadata"]["name"] for i in http.get(
        f"/api/v1/namespaces/{ns}/configmaps").json()["items"]]
    assert names == ["a"]


def test_table_for_kubectl_get(http: httpx.Client, ns: str) -> None:
    http.post(f"/api/v1/namespaces/{ns}/configmaps",
              json={"metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}})
    table = http.get(f"/api/v1/namespaces/{ns}/configmaps", headers={"Accept": TABLE}).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["a", 2]
    assert table["rows"][0]["object"]["metadata"]["name"] == "a"


def test_list_pages_with_limit_and_continue(http: httpx.Client, ns: str) -> None:
    for n in range(5):
        http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": f"c{n}"}})
    seen = []
    token = ""
    while True:
        params = {"limit": "2", **({"continue": token} if token else {})}
        page = http.get(f"/api/v1/namespaces/{ns}/configmaps", params=params).json()
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert seen == ["c0", "c1", "c2", "c3", "c4"]


def watch_lines(http: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    with http.stream("GET", path, params={"watch": "true", **params}) as r:
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line]


def test_watch_timeout_and_initial_events_end_bookmark(http: httpx.Client, ns: str) -> None:
    http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "a"}})
    events = watch_lines(http, f"/api/v1/namespaces/{ns}/configmaps", timeoutSeconds="1",
                         sendInitialEvents="true", allowWatchBookmarks="true",
                         resourceVersionMatch="NotOlderThan")
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}


def test_watch_a_single_object_by_field_selector(http: httpx.Client, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    rv = http.get(base).json()["metadata"]["resourceVersion"]
    http.post(base, json={"metadata": {"name": "a"}})
    http.post(base, json={"metadata": {"name": "b"}})
    events = watch_lines(http, base, resourceVersion=rv, timeoutSeconds="1",
                         fieldSelector="metadata.name=b")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_watch_a_bad_resource_version_is_400(http: httpx.Client, ns: str) -> None:
    status(http.get(f"/api/v1/namespaces/{ns}/configmaps",
                    params={"watch": "1", "resourceVersion": "abc"}), 400, "BadRequest")


def test_pod_log_before_the_container_ran(http: httpx.Client, ns: str) -> None:
    http.post(f"/api/v1/namespaces/{ns}/pods", json={"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}})
    body = status(http.get(f"/api/v1/namespaces/{ns}/pods/p/log"), 400, "BadRequest")
    assert "choose one of: [a b]" in body["message"]
    body = status(http.get(f"/api/v1/namespaces/{ns}/pods/p/log", params={"container": "a"}),
                  400, "BadRequest")
    assert "waiting to start" in body["message"]
    status(http.get(f"/api/v1/namespaces/{ns}/pods/p/log", params={"container": "z"}),
           400, "BadRequest")


def test_services_get_cluster_ips_node_ports_and_target_ports(http: httpx.Client,
                                                              ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/services"
    a = http.post(base, json={"metadata": {"name": "a"}, "spec": {
        "type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80}]}}).json()
    b = http.post(base, json={"metadata": {"name": "b"}, "spec": {
        "selector": {"app": "b"}, "ports": [{"port": 81, "targetPort": "http"}]}}).json()
    assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
    assert 30000 <= a["spec"]["ports"][0]["nodePort"] <= 32767
    assert a["spec"]["ports"][0]["targetPort"] == 80
    assert b["spec"]["ports"][0]["targetPort"] == "http"
    taken = a["spec"]["ports"][0]["nodePort"]
    body = status(http.post(base, json={"metadata": {"name": "c"}, "spec": {
        "type": "NodePort", "ports": [{"port": 80, "nodePort": taken}]}}), 422, "Invalid")
    assert "already allocated" in body["message"]


def test_openapi_v3_documents_custom_resources(http: httpx.Client) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "things.example.org"}, "spec": {
               "group": "example.org", "scope": "Cluster",
               "names": {"plural": "things", "kind": "Thing"},
               "versions": [{"name": "v1beta1", "served": True, "storage": True, "schema": {
                   "openAPIV3Schema": {"type": "object", "properties": {
                       "spec": {"type": "object"}}}}}]}}
    created = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert created.status_code == 201
    conditions = {c["type"]: c["status"] for c in created.json()["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    index = http.get("/openapi/v3").json()["paths"]
    url = index["apis/example.org/v1beta1"]["serverRelativeURL"]
    doc = http.get(url).json()
    schema = doc["components"]["schemas"]["org.example.v1beta1.Thing"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "example.org", "version": "v1beta1", "kind": "Thing"}]
    assert "/apis/example.org/v1beta1/things/{name}" in doc["paths"]
    invalid = {**crd, "metadata": {"name": "wrong.example.org"}}
    status(http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=invalid),
           422, "Invalid")


def test_custom_objects_through_each_served_version(http: httpx.Client, ns: str) -> None:
    versions = [{"name": v, "served": True, "storage": v == "v1", "schema": {
        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
        for v in ("v1", "v2")]
    crd = {"metadata": {"name": "multis.example.org"}, "spec": {
        "group": "example.org", "scope": "Namespaced",
        "names": {"plural": "multis", "kind": "Multi"}, "versions": versions}}
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                     json=crd).status_code == 201
    made = http.post(f"/apis/example.org/v1/namespaces/{ns}/multis",
                     json={"metadata": {"name": "m"}, "spec": {"a": 1}})
    assert made.status_code == 201
    v2 = http.get(f"/apis/example.org/v2/namespaces/{ns}/multis/m").json()
    assert (v2["apiVersion"], v2["spec"]) == ("example.org/v2", {"a": 1})
    listed = http.get(f"/apis/example.org/v2/namespaces/{ns}/multis").json()
    assert [i["apiVersion"] for i in listed["items"]] == ["example.org/v2"]


def test_dry_run_changes_nothing(http: httpx.Client, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    assert http.post(base, params={"dryRun": "All"},
                     json={"metadata": {"name": "d"}}).status_code == 201
    status(http.get(f"{base}/d"), 404, "NotFound")
    http.post(base, json={"metadata": {"name": "d"}})
    assert http.delete(f"{base}/d", params={"dryRun": "All"}).status_code == 200
    assert http.get(f"{base}/d").status_code == 200


def test_pods_on_a_node_terminate_gracefully(http: httpx.Client, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/pods"
    http.post(base, json={"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "x"}], "terminationGracePeriodSeconds": 7}})
    bound = http.post(f"{base}/p/binding", json={"target": {"kind": "Node", "name": "n1"}})
    assert bound.status_code == 201
    assert http.get(f"{base}/p").json()["spec"]["nodeName"] == "n1"
    terminating = http.delete(f"{base}/p").json()
    assert terminating["metadata"]["deletionGracePeriodSeconds"] == 7
    assert http.get(f"{base}/p").json()["metadata"]["deletionTimestamp"]
    gone = http.request("DELETE", f"{base}/p", json={"gracePeriodSeconds": 0})
    assert gone.status_code == 200
    status(http.get(f"{base}/p"), 404, "NotFound")


def test_a_watch_that_the_client_drops_is_released(localkube: Localkube, ns: str) -> None:
    def watches() -> int:
        with anonymous_http(localkube.kubeconfig) as anonymous:
            count: int = anonymous.get("/localkube/v1/stats").json()["watches"]
        return count

    before = watches()
    with admin_http(localkube.kubeconfig) as c, c.stream(
            "GET", f"/api/v1/namespaces/{ns}/configmaps", params={"watch": "1"}) as r:
        assert r.status_code == 200
        eventually(lambda: watches() == before + 1)
    eventually(lambda: watches() == before)


def test_event_table_columns(http: httpx.Client, ns: str) -> None:
    http.post(f"/api/v1/namespaces/{ns}/events", json={
        "metadata": {"name": "e1"}, "type": "Warning", "reason": "BackOff",
        "message": "restarting", "involvedObject": {"kind": "Pod", "name": "p"}})
    table = http.get(f"/api/v1/namespaces/{ns}/events", headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Last Seen", "Type", "Reason", "Object", "Message"]
    assert table["rows"][0]["cells"][1:5] == ["Warning", "BackOff", "pod/p", "restarting"]


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": 5}}),
    ("/api/v1/namespaces/{ns}/configmaps", {"metadata": {"generateName": ["x"]}}),
    ("/apis/apps/v1/namespaces/{ns}/deployments", {"metadata": {"name": "d"}, "spec": "x"}),
    ("/apis/apps/v1/namespaces/{ns}/deployments",
     {"metadata": {"name": "d"}, "spec": {"selector": "app=x", "template": {}}}),
    ("/api/v1/namespaces/{ns}/pods", {"metadata": {"name": "p"}, "spec": {"containers": "c"}}),
    ("/api/v1/namespaces/{ns}/services",
     {"metadata": {"name": "s"}, "spec": {"ports": ["80"]}}),
])
def test_malformed_objects_are_400_or_422_and_nothing_is_stored(
    http: httpx.Client, ns: str, path: str, body: dict[str, Any],
) -> None:
    r = http.post(path.format(ns=ns), json=body)
    assert r.status_code in (400, 422), r.text
    assert r.json()["kind"] == "Status"
    listed = http.get(path.format(ns=ns)).json()
    assert listed["items"] == []


def test_aggregated_discovery_for_kubectl(http: httpx.Client) -> None:
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json")
    r = http.get("/apis", headers={"Accept": accept})
    assert r.headers["Content-Type"].startswith(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    groups = {g["metadata"]["name"]: g for g in r.json()["items"]}
    (v1,) = groups["apps"]["versions"]
    deployments = next(res for res in v1["resources"] if res["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced"
    assert deployments["shortNames"] == ["deploy"]
    assert {s["subresource"] for s in deployments["subresources"]} == {"status", "scale"}
    core = http.get("/api", headers={"Accept": accept}).json()["items"]
    assert [g["metadata"]["name"] for g in core] == [""]
    assert "pods" in {res["resource"] for res in core[0]["versions"][0]["resources"]}
    # Without asking for it, the classic documents.
    assert http.get("/apis").json()["kind"] == "APIGroupList"
