"""Every kustomization renders, and what it renders is valid and locked down."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from localkube.api.schema import apply_defaults, prune, validate
from scaler.signals import SIGNALS, parse_trigger
from tests.helpers.crds import crd_schemas, vendored_crds
from tests.helpers.manifests import OVERLAYS, pod_templates, render

K8S_VERSION = "1.37.0"
CORE_GROUPS = re.compile(
    r"^(v1|apps/v1|batch/v1|policy/v1|rbac\.authorization\.k8s\.io/v1|networking\.k8s\.io/v1|"
    r"apiextensions\.k8s\.io/v1|autoscaling/v2|coordination\.k8s\.io/v1)$"
)


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """openAPIV3Schema of each CRD brix ships, and of the published third-party CRDs
    vendored under tests/data/crds/ (KEDA, Prometheus Operator), by (apiVersion, kind)."""
    shipped = tuple(o for o in render("base") if o["kind"] == "CustomResourceDefinition")
    return {**crd_schemas(vendored_crds()), **crd_schemas(shipped)}


def _check_custom(schema: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """What an API server would say of ``obj`` with strict field validation (kubectl's
    default): unknown fields, then schema violations (after defaulting)."""
    pruned, unknown = prune(schema, obj)
    problems = [f"unknown field {f!r}" for f in unknown]
    problems += [f"{c.field}: {c.message}" for c in validate(schema, apply_defaults(schema,
                                                                                   pruned))]
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_valid_objects(overlay: str) -> None:
    objects = render(overlay)
    assert objects, f"{overlay} renders nothing"
    crds = _crd_schemas()
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        name = f"{obj['kind']}/{obj['metadata'].get('name')}"
        if CORE_GROUPS.match(obj["apiVersion"]):
            try:
                kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {name}: {exc.message} at {list(exc.path)}")
        elif key in crds:
            problems = _check_custom(crds[key], obj)
            assert not problems, f"{overlay}: {name}: {problems}"
        else:
            pytest.fail(f"{overlay}: {name}: no schema to check {key} against")


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "overlays/prometheus-operator"])
def test_every_pod_is_locked_down(overlay: str) -> None:
    templates = list(pod_templates(render(overlay)))
    assert templates, f"{overlay} has no workload"
    for name, spec in templates:
        pod_ctx = spec.get("securityContext", {})
        assert pod_ctx.get("runAsNonRoot") is True, f"{name}: runAsNonRoot"
        assert pod_ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccomp"
        for container in spec.get("initContainers", []) + spec["containers"]:
            ctx = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation"
            assert ctx.get("readOnlyRootFilesystem") is True, f"{where}: writable root filesystem"
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities"
            assert not ctx.get("privileged"), f"{where}: privileged"
            assert "limits" in container.get("resources", {}), f"{where}: no resource limits"


def test_models_follow_the_label_and_port_contract() -> None:
    from brix.contract import (
        ENGINE_PORT,
        ENGINE_PORT_NAME,
        MODEL_LABEL,
        SIDECAR_PORT,
        SIDECAR_PORT_NAME,
    )

    for overlay in ("models", "overlays/gpu", "overlays/local"):
        deployments = [
            o
            for o in render(overlay)
            if o["kind"] == "Deployment" and MODEL_LABEL in o["metadata"].get("labels", {})
        ]
        assert deployments, overlay
        for dep in deployments:
            model = dep["metadata"]["labels"][MODEL_LABEL]
            tmpl = dep["spec"]["template"]
            assert tmpl["metadata"]["labels"][MODEL_LABEL] == model
            ports = {
                p["name"]: p["containerPort"]
                for c in tmpl["spec"]["containers"]
                for p in c.get("ports", [])
            }
            assert ports.get(ENGINE_PORT_NAME) == ENGINE_PORT, dep["metadata"]["name"]
            assert ports.get(SIDECAR_PORT_NAME) == SIDECAR_PORT, dep["metadata"]["name"]
            args = [a for c in tmpl["spec"]["containers"] for a in c["command"] + c.get("args", [])]
            assert model in args, f"{dep['metadata']['name']} does not serve {model} by that name"


@pytest.mark.parametrize("overlay", ["overlays/keda", "overlays/keda/gpu"])
def test_keda_triggers_carry_brix_metadata(overlay: str) -> None:
    scaled = [o for o in render(overlay) if o["kind"] == "ScaledObject"]
    assert scaled
    deployments = {
        o["metadata"]["name"] for o in render(overlay) if o["kind"] == "Deployment"
    }
    for so in scaled:
        assert so["spec"]["scaleTargetRef"]["name"] in deployments
        assert "fallback" in so["spec"], so["metadata"]["name"]
        for trig in so["spec"]["triggers"]:
            meta = trig["metadata"]
            assert re.fullmatch(r"[a-z0-9.-]+:\d+", meta["scalerAddress"])
            assert ("model" in meta) != ("query" in meta)
            assert meta.get("signal", "queue") in SIGNALS
            # The scaler accepts the shipped metadata as it is.
            trigger = parse_trigger(meta, so["metadata"]["namespace"])
            if trigger.slo is not None:
                # The HPA reproduces the policy's count: ceil(count / 1) per replica.
                assert trigger.target == 1.0
                assert trig.get("metricType", "AverageValue") == "AverageValue"
    # Under KEDA the fallback loop's annotation is off, so the two never fight.
    for obj in render(overlay):
        if obj["kind"] == "Deployment":
            assert obj["metadata"].get("annotations", {}).get("brix.dev/autoscale") != "true"


def test_the_published_schemas_catch_a_typo() -> None:
    crds = _crd_schemas()
    scaled = next(o for o in render("overlays/keda") if o["kind"] == "ScaledObject")
    typo = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 3}}
    assert _check_custom(crds[("keda.sh/v1alpha1", "ScaledObject")], typo) == [
        "unknown field 'spec.maxReplicas'"]
    rule = next(o for o in render("overlays/prometheus-operator") if o["kind"] == "PrometheusRule")
    broken = {**rule, "spec": {"groups": [{"name": "g", "rules": [{"record": "r"}]}]}}
    problems = _check_custom(crds[("monitoring.coreos.com/v1", "PrometheusRule")], broken)
    assert any("expr" in p for p in problems), problems
