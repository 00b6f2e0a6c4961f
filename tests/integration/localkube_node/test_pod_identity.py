"""Each pod's own temporary directory and ServiceAccount: in-cluster configuration of the
official client works unchanged inside a pod, under the pod's ServiceAccount's RBAC."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from localkube.node.identity import SA_PATH, PodIdentity, mount_namespaces
from tests.helpers.wait import wait_until
from tests.integration.localkube_node.conftest import Cluster

pytestmark = pytest.mark.integration

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# Inside the pod: what it sees, then what the API lets it do through in-cluster config.
PROBE = f"""
import json, os, tempfile, time
from kubernetes import client, config
from kubernetes.client.rest import ApiException
name = os.environ["HOSTNAME"]
with open(os.path.join(tempfile.gettempdir(), "scratch"), "w") as f:
    f.write(name)
time.sleep(1.5)  # the other pod writes its own "scratch" meanwhile
out = {{"tmp": tempfile.gettempdir(), "scratch": open(os.path.join(tempfile.gettempdir(),
       "scratch")).read(), "has_token": os.path.exists("{SA_DIR}/token"),
       "kubeconfig": "KUBECONFIG" in os.environ}}
if out["has_token"]:
    out["namespace"] = open("{SA_DIR}/namespace").read()
    config.load_incluster_config()
    core = client.CoreV1Api()
    for what in ("pods", "secrets"):
        try:
            getattr(core, "list_namespaced_" + what[:-1])(out["namespace"])
            out[what] = 200
        except ApiException as exc:
            out[what] = exc.status
print("RESULT " + json.dumps(out), flush=True)
time.sleep(600)
"""


def pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, **spec, "containers": [
                {"name": "main", "image": "unused", "command": [sys.executable, "-c", PROBE]}]}}


def result(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        out = cluster.kubectl("-n", ns, "logs", name, check=False)
        for line in out.splitlines():
            if line.startswith("RESULT "):
                parsed: dict[str, Any] = json.loads(line[len("RESULT "):])
                return parsed
        return None
    return wait_until(found, what=f"{name}'s report", timeout=90)


def test_pods_get_their_own_tmpdir_and_service_account(cluster: Cluster,
                                                        namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "reader"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "reader"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader"}]},
    ]))
    cluster.core.create_namespaced_pod(namespace, pod("a", serviceAccountName="reader"))
    cluster.core.create_namespaced_pod(namespace, pod("b"))  # the namespace's "default"
    cluster.core.create_namespaced_pod(namespace, pod("c", automountServiceAccountToken=False))
    a, b, c = (result(cluster, namespace, n) for n in "abc")
    assert len({a["tmp"], b["tmp"], c["tmp"]}) == 3
    # short enough for Unix sockets under it (vLLM's ZeroMQ IPC paths: 107 bytes at most)
    assert all(len(x["tmp"]) + len("/" + "0" * 36) <= 107 for x in (a, b, c))
    assert (a["scratch"], b["scratch"], c["scratch"]) == ("a", "b", "c")
    assert a["namespace"] == b["namespace"] == namespace
    assert (a["pods"], a["secrets"]) == (200, 403)  # what its Role grants, no more
    assert (b["pods"], b["secrets"]) == (403, 403)  # "default" has no Role
    assert c["has_token"] is False
    assert not a["kubeconfig"]
    assert not c["kubeconfig"]


def test_a_pod_of_a_missing_service_account_waits_with_the_reason(cluster: Cluster,
                                                                 namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod("lost", serviceAccountName="nobody"))

    def waiting() -> str | None:
        statuses = cluster.core.read_namespaced_pod("lost", namespace).status.container_statuses
        w = statuses[0].state.waiting if statuses else None
        return w.message if w and w.reason == "CreateContainerConfigError" else None
    message = wait_until(waiting, what="the pod waiting for its ServiceAccount")
    assert "nobody" in message
    assert "not found" in message


def test_the_wrapped_command_runs_in_a_mount_namespace_then_the_program(tmp_path: Path) -> None:
    sa_dir = tmp_path / "sa"
    sa_dir.mkdir()
    (sa_dir / "namespace").write_text("team")
    argv = PodIdentity(sa_dir=sa_dir).wrap(["cat", f"{SA_PATH}/namespace"],
                                           {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert argv[0] == "unshare"
    assert argv[-2:] == [shutil.which("cat", path="/usr/bin:/bin"), f"{SA_PATH}/namespace"]
    if not mount_namespaces():
        pytest.skip("no mount namespaces here (not root, or no unshare)")
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10)
    assert out.stdout == "team"
    assert not (SA_PATH / "namespace").exists()  # the host's view is untouched
