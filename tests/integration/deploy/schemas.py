"""JSON schemas for the third-party custom resources brix ships.

KEDA's and the Prometheus Operator's CRDs cannot be fetched here, so these
schemas cover the fields brix uses, with the types and required fields of
those CRDs (keda.sh/v1alpha1, monitoring.coreos.com/v1), and reject unknown
fields at the levels brix writes, so a typo fails the test.
"""

from __future__ import annotations

from typing import Any

_STR = {"type": "string"}
_INT = {"type": "integer"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STR, "namespace": _STR, "labels": _STR_MAP, "annotations": _STR_MAP},
    "additionalProperties": False,
}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": _STR_MAP,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": _STR,
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": _STR},
                },
                "additionalProperties": False,
            },
        },
    },
    "additionalProperties": False,
}


def _object(kind: str, api_version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
        "additionalProperties": False,
    }


SCALED_OBJECT = _object(
    "ScaledObject",
    "keda.sh/v1alpha1",
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _STR, "kind": _STR, "apiVersion": _STR},
                "additionalProperties": False,
            },
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "idleReplicaCount": _INT,
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "fallback": {
                "type": "object",
                "required": ["failureThreshold", "replicas"],
                "properties": {"failureThreshold": _INT, "replicas": _INT},
                "additionalProperties": False,
            },
            "advanced": {"type": "object"},
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "properties": {
                        "type": {"enum": ["external", "external-push"]},
                        "name": _STR,
                        # KEDA's metadata is map[string]string: numbers must be quoted.
                        "metadata": _STR_MAP,
                        "authenticationRef": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": _STR, "kind": _STR},
                            "additionalProperties": False,
                        },
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
)

TRIGGER_AUTHENTICATION = _object(
    "TriggerAuthentication",
    "keda.sh/v1alpha1",
    {
        "type": "object",
        "properties": {
            "secretTargetRef": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "name", "key"],
                    "properties": {"parameter": _STR, "name": _STR, "key": _STR},
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
)

_ENDPOINT = {
    "type": "object",
    "required": ["port"],
    "properties": {
        "port": _STR,
        "path": _STR,
        "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
        "scheme": {"enum": ["http", "https"]},
        "honorLabels": {"type": "boolean"},
    },
    "additionalProperties": False,
}

POD_MONITOR = _object(
    "PodMonitor",
    "monitoring.coreos.com/v1",
    {
        "type": "object",
        "required": ["selector", "podMetricsEndpoints"],
        "properties": {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": {
                "type": "object",
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": _STR},
                },
                "additionalProperties": False,
            },
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
        },
        "additionalProperties": False,
    },
)

SERVICE_MONITOR = _object(
    "ServiceMonitor",
    "monitoring.coreos.com/v1",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "properties": {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
        },
        "additionalProperties": False,
    },
)

_RULE = {
    "type": "object",
    "required": ["expr"],
    "properties": {
        "record": _STR,
        "alert": _STR,
        "expr": _STR,
        "for": {"type": "string", "pattern": r"^\d+[smh]$"},
        "labels": _STR_MAP,
        "annotations": _STR_MAP,
    },
    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
    "additionalProperties": False,
}

PROMETHEUS_RULE = _object(
    "PrometheusRule",
    "monitoring.coreos.com/v1",
    {
        "type": "object",
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "properties": {
                        "name": _STR,
                        "interval": _STR,
                        "rules": {"type": "array", "items": _RULE},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
)

BY_KIND: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}
