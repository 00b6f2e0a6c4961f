"""The LoraAdapter CRD rejects bad objects at the API, naming the field.

Against localkube's API server (no node, no operator needed): ``kubectl apply``
of each bad object fails with a message that names the field, and nothing of
it is stored; a good object is accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.localkube import kubectl, start_localkube
from tests.helpers.operator import adapter_yaml, get_object, install_crds
from tests.helpers.procs import ProcessGroup


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("crd")
    group = ProcessGroup(log_dir=root / "logs")
    try:
        _, path = start_localkube(group, root / "kube", node=False)
        install_crds(path)
        yield path
    finally:
        group.stop_all()


def _object(name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "brix.dev/v1alpha1", "kind": "LoraAdapter",
                           "metadata": {"name": name}, "spec": spec})


GOOD = {"baseModel": "m", "source": "file:///adapters/sql"}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": "file:///a"}, "spec.baseModel"),
        ({"baseModel": "m"}, "spec.source"),
        ({**GOOD, "source": "ftp://host/a.tgz"}, "spec.source"),
        ({**GOOD, "source": "/adapters/sql"}, "spec.source"),
        ({**GOOD, "sha256": "not-a-digest"}, "spec.sha256"),
        ({**GOOD, "sha256": "ab" * 31}, "spec.sha256"),
        ({**GOOD, "replicas": -1}, "spec.replicas"),
        ({**GOOD, "replicas": "two"}, "spec.replicas"),
        ({**GOOD, "podSelector": {"matchLabels": {"zone": 3}}}, "spec.podSelector.matchLabels"),
        ({**GOOD, "podSelector": {"matchExpressions": [{"key": "z", "operator": "Near"}]}},
         "spec.podSelector.matchExpressions[0].operator"),
    ],
    ids=["no-baseModel", "no-source", "ftp", "no-scheme", "sha-text", "sha-short",
         "replicas-negative", "replicas-string", "selector-label", "selector-operator"],
)
def test_a_bad_object_is_rejected_naming_the_field(
    kubeconfig: Path, spec: dict[str, Any], field: str
) -> None:
    result = kubectl(kubeconfig, "apply", "-f", "-", input=_object("bad", spec), check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert get_object(kubeconfig, "loraadapters.brix.dev", "default", "bad") is None


def test_a_good_object_is_accepted_and_listed_by_its_short_name(kubeconfig: Path) -> None:
    kubectl(kubeconfig, "apply", "-f", "-", input=adapter_yaml(
        "sql", base_model="m", source="https://example.com/sql.tar.gz", sha256="AB" * 32,
        replicas=0, pod_selector={"matchExpressions": [{"key": "zone", "operator": "Exists"}]}))
    obj = get_object(kubeconfig, "lora", "default", "sql")
    assert obj is not None
    assert obj["spec"]["replicas"] == 0
    names = kubectl(kubeconfig, "get", "lora", "-o", "name").stdout.split()
    assert names == ["loraadapter.brix.dev/sql"]
