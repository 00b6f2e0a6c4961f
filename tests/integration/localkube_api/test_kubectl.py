"""kubectl against localkube: apply, get (printer columns, -o yaml), scale, label,
describe, delete, and clear errors for what localkube does not serve."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.localkube import kubectl, kubectl_binary
from tests.integration.localkube_api.conftest import Localkube

REPO = Path(__file__).resolve().parents[3]

CRD = textwrap.dedent("""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: gadgets.example.com
    spec:
      group: example.com
      scope: Namespaced
      names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
      versions:
      - name: v1
        served: true
        storage: true
        subresources:
          status: {}
          scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
        additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Color, type: string, jsonPath: .spec.color}
        - {name: Phase, type: string, jsonPath: .status.phase}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [size]
                properties:
                  size: {type: integer, minimum: 1, maximum: 10}
                  color: {type: string, enum: [red, blue], default: red}
                  replicas: {type: integer, minimum: 0}
              status:
                type: object
                x-kubernetes-preserve-unknown-fields: true
    """)


def gadget(name: str, ns: str, **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "example.com/v1", "kind": "Gadget",
                           "metadata": {"name": name, "namespace": ns}, "spec": spec})


@pytest.fixture
def ns(localkube: Localkube) -> str:
    name = f"k-{uuid.uuid4().hex[:8]}"
    kubectl(localkube.kubeconfig, "create", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    return name


@pytest.fixture
def crd(localkube: Localkube) -> None:
    kubectl(localkube.kubeconfig, "apply", "-f", "-", input=CRD)
    kubectl(localkube.kubeconfig, "wait", "--for=condition=Established",
            "crd/gadgets.example.com", "--timeout=10s")


def test_apply_crd_then_custom_object_and_get_columns(localkube: Localkube, crd: None,
                                                      ns: str) -> None:
    kc = localkube.kubeconfig
    out = kubectl(kc, "apply", "-f", "-", input=gadget("g1", ns, size=3)).stdout
    assert "gadget.example.com/g1 created" in out
    kubectl(kc, "apply", "-f", "-", input=gadget("g2", ns, size=5, color="blue"))
    lines = kubectl(kc, "get", "gadgets", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "COLOR", "PHASE"]
    assert lines[1].split() == ["g1", "3", "red"]  # color defaulted by the schema
    assert lines[2].split() == ["g2", "5", "blue"]
    assert kubectl(kc, "get", "gd", "g1", "-n", ns, "-o", "name").stdout.strip() == (
        "gadget.example.com/g1")
    obj = yaml.safe_load(kubectl(kc, "get", "gadget", "g1", "-n", ns, "-o", "yaml").stdout)
    assert obj["spec"] == {"size": 3, "color": "red"}
    assert obj["metadata"]["generation"] == 1
    kubectl(kc, "apply", "-f", "-", input=gadget("g1", ns, size=4))
    obj = json.loads(kubectl(kc, "get", "gadget", "g1", "-n", ns, "-o", "json").stdout)
    assert (obj["spec"]["size"], obj["metadata"]["generation"]) == (4, 2)


def test_invalid_custom_objects_are_refused_with_the_field(localkube: Localkube, crd: None,
                                                          ns: str) -> None:
    kc = localkube.kubeconfig
    bad = kubectl(kc, "apply", "-f", "-", input=gadget("bad", ns, size=11, color="green"),
                  check=False)
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr
    assert "spec.color" in bad.stderr
    assert 'Unsupported value: "green"' in bad.stderr
    unknown = kubectl(kc, "apply", "-f", "-", input=gadget("u", ns, size=1, shape="round"),
                      check=False)
    assert unknown.returncode != 0
    assert 'unknown field "spec.shape"' in unknown.stderr
    lenient = kubectl(kc, "apply", "--validate=false", "-f", "-",
                      input=gadget("u", ns, size=1, shape="round"))
    assert lenient.returncode == 0
    obj = json.loads(kubectl(kc, "get", "gadget", "u", "-n", ns, "-o", "json").stdout)
    assert "shape" not in obj["spec"]  # pruned
    assert kubectl(kc, "get", "gadget", "bad", "-n", ns, check=False).returncode != 0


def test_scale_a_custom_object_and_a_deployment(localkube: Localkube, crd: None,
                                                ns: str) -> None:
    kc = localkube.kubeconfig
    kubectl(kc, "apply", "-f", "-", input=gadget("g", ns, size=1, replicas=1))
    kubectl(kc, "scale", "gadget/g", "-n", ns, "--replicas=3")
    obj = json.loads(kubectl(kc, "get", "gadget", "g", "-n", ns, "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 3
    kubectl(kc, "apply", "-f", "-", input=deployment_yaml("web", ns, image="img:1"))
    out = kubectl(kc, "scale", "deployment/web", "-n", ns, "--replicas=4").stdout
    assert "deployment.apps/web scaled" in out
    got = json.loads(kubectl(kc, "get", "deploy", "web", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["replicas"] == 4
    stale = kubectl(kc, "scale", "deployment/web", "-n", ns, "--replicas=2",
                    "--resource-version=1", check=False)
    assert stale.returncode != 0
    assert "resource version" in stale.stderr
    assert json.loads(kubectl(kc, "get", "deploy", "web", "-n", ns, "-o", "json").stdout)[
        "spec"]["replicas"] == 4


def deployment_yaml(name: str, ns: str, *, image: str, env: dict[str, str] | None = None) -> str:
    container: dict[str, Any] = {"name": "app", "image": image,
                                 "ports": [{"containerPort": 8000, "name": "http"}]}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [container]}}},
    })


def test_apply_updates_a_deployment_with_strategic_merge(localkube: Localkube, ns: str) -> None:
    kc = localkube.kubeconfig
    kubectl(kc, "apply", "-f", "-", input=deployment_yaml("web", ns, image="img:1",
                                                           env={"A": "1", "B": "2"}))
    kubectl(kc, "apply", "-f", "-", input=deployment_yaml("web", ns, image="img:2",
                                                           env={"A": "1"}))
    got = json.loads(kubectl(kc, "get", "deploy", "web", "-n", ns, "-o", "json").stdout)
    (container,) = got["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "img:2"
    assert container["env"] == [{"name": "A", "value": "1"}]  # B removed by apply
    assert got["metadata"]["generation"] == 2
    lines = kubectl(kc, "get", "deploy", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert lines[1].split()[:2] == ["web", "0/1"]


def test_label_annotate_describe_delete(localkube: Localkube, ns: str) -> None:
    kc = localkube.kubeconfig
    kubectl(kc, "apply", "-f", "-", input=deployment_yaml("web", ns, image="img:1"))
    kubectl(kc, "label", "deploy/web", "-n", ns, "tier=front")
    kubectl(kc, "annotate", "deploy/web", "-n", ns, "note=hello")
    got = json.loads(kubectl(kc, "get", "deploy", "web", "-n", ns, "-o", "json").stdout)
    assert got["metadata"]["labels"]["tier"] == "front"
    assert got["metadata"]["annotations"]["note"] == "hello"
    assert kubectl(kc, "get", "deploy", "-n", ns, "-l", "tier=front", "-o",
                   "name").stdout.split() == ["deployment.apps/web"]
    kubectl(kc, "label", "deploy/web", "-n", ns, "tier-")
    described = kubectl(kc, "describe", "deploy", "web", "-n", ns).stdout
    assert "Name:" in described
    assert "web" in described
    assert "img:1" in described
    assert kubectl(kc, "delete", "deploy", "web", "-n", ns).stdout.startswith(
        'deployment.apps "web" deleted')
    assert kubectl(kc, "get", "deploy", "-n", ns, "-o", "name").stdout.strip() == ""


def test_pods_describe_and_wide(localkube: Localkube, ns: str) -> None:
    kc = localkube.kubeconfig
    kubectl(kc, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}))
    lines = kubectl(kc, "get", "pods", "-n", ns, "-o", "wide").stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[:3] == ["p", "0/1", "Pending"]
    assert "Status:" in kubectl(kc, "describe", "pod", "p", "-n", ns).stdout
    kubectl(kc, "delete", "pod", "p", "-n", ns)


def test_delete_a_crd_removes_its_objects(localkube: Localkube, ns: str) -> None:
    kc = localkube.kubeconfig
    crd = CRD.replace("gadgets", "gizmos").replace("gadget", "gizmo").replace(
        "Gadget", "Gizmo").replace("[gd]", "[gz]")
    kubectl(kc, "apply", "-f", "-", input=crd)
    kubectl(kc, "apply", "-f", "-", input=gadget("a", ns, size=1).replace("Gadget", "Gizmo"))
    assert kubectl(kc, "get", "gizmos", "-n", ns, "-o", "name").stdout.strip() == (
        "gizmo.example.com/a")
    kubectl(kc, "delete", "crd", "gizmos.example.com")
    gone = kubectl(kc, "get", "gizmos", "-n", ns, check=False)
    assert gone.returncode != 0
    assert "gizmos" in gone.stderr


def test_unserved_kinds_get_an_error_naming_them(localkube: Localkube, ns: str) -> None:
    manifest = yaml.safe_dump({"apiVersion": "apps/v1", "kind": "StatefulSet",
                               "metadata": {"name": "s", "namespace": ns}, "spec": {}})
    result = kubectl(localkube.kubeconfig, "apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert "StatefulSet" in result.stderr


def test_the_repository_manifests_apply(localkube: Localkube) -> None:
    """brix's own CRDs and base manifests apply as they would to a cluster."""
    kc = localkube.kubeconfig
    out = kubectl(kc, "apply", "-k", str(REPO / "k8s" / "crds")).stdout
    assert "loraadapters.brix.dev" in out
    kubectl(kc, "wait", "--for=condition=Established", "crd/loraadapters.brix.dev",
            "--timeout=10s")
    assert "No resources found" in kubectl(kc, "get", "lora", "-A").stderr
    # The overlay `make up` applies (base and models included), placeholders and all.
    out = kubectl(kc, "apply", "-k", str(REPO / "k8s" / "overlays" / "local")).stdout
    assert "deployment.apps/" in out
    assert kubectl(kc, "get", "deployments", "-A", "-o", "name").stdout.strip()


def test_get_watch_streams_rows(localkube: Localkube, ns: str) -> None:
    kc = localkube.kubeconfig
    with subprocess.Popen(
        [kubectl_binary(), "--kubeconfig", str(kc), "--cache-dir",
         str(kc.parent / "kubectl-cache"), "get", "configmaps", "-n", ns, "-w",
         "--output-watch-events"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as watching:
        try:
            assert watching.stdout is not None
            kubectl(kc, "create", "configmap", "late", "-n", ns, "--from-literal=a=b")
            for line in watching.stdout:
                if "late" in line:
                    assert line.split()[:2] == ["ADDED", "late"]
                    break
        finally:
            watching.terminate()
            watching.wait(10)


def test_auth_can_i_and_whoami(localkube: Localkube) -> None:
    kc = localkube.kubeconfig
    assert kubectl(kc, "auth", "can-i", "create", "pods").stdout.strip() == "yes"
    whoami = kubectl(kc, "auth", "whoami").stdout
    assert "kubernetes-admin" in whoami
    assert "system:masters" in whoami
    listed = kubectl(kc, "get", "selfsubjectaccessreviews", check=False)
    assert listed.returncode != 0
    assert "MethodNotAllowed" in listed.stderr or "not allow" in listed.stderr


def test_kubectl_create_and_run_generators(localkube: Localkube, ns: str) -> None:
    """These commands send protobuf: the kinds they make are decoded, others refused."""
    kc = localkube.kubeconfig
    kubectl(kc, "create", "deployment", "gen", "-n", ns, "--image=img:1", "--replicas=2",
            "--port=8080", "--", "python", "-m", "http.server")
    dep = json.loads(kubectl(kc, "get", "deploy", "gen", "-n", ns, "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 2
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "http.server"]
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    kubectl(kc, "run", "once", "-n", ns, "--image=x", "--command", "--", "sleep", "1")
    pod = json.loads(kubectl(kc, "get", "pod", "once", "-n", ns, "-o", "json").stdout)
    assert pod["spec"]["containers"][0]["command"] == ["sleep", "1"]
    kubectl(kc, "create", "configmap", "cfg", "-n", ns, "--from-literal=a=b")
    assert json.loads(kubectl(kc, "get", "cm", "cfg", "-n", ns, "-o", "json").stdout)[
        "data"] == {"a": "b"}
    refused = kubectl(kc, "create", "role", "r", "-n", ns, "--verb=get", "--resource=pods",
                      check=False)
    assert refused.returncode != 0
    assert "Role" in refused.stderr
    assert "apply -f" in refused.stderr
