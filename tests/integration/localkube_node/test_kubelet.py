"""The kubelet through the API: env and $(VAR) expansion, logs, restarts, probes,
restart policies, graceful deletion, volumes, and bad pods reported clearly."""

from __future__ import annotations

import base64
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tests.helpers.wait import wait_until
from tests.integration.localkube_node.conftest import Cluster, is_ready


def pod_manifest(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "unused", "command": command}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [container], **spec}}


def container_status(cluster: Cluster, ns: str, name: str) -> Any:
    pod = cluster.core.read_namespaced_pod(name, ns)
    statuses = pod.status.container_statuses or []
    return statuses[0] if statuses else None


def pid_of(status: Any) -> int:
    return int(status.container_id.removeprefix("localkube://"))


def test_env_expansion_and_logs(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "settings"}, "data": {"MODE": "fast"}})
    cluster.core.create_namespaced_secret(namespace, {
        "metadata": {"name": "creds"}, "data": {"TOKEN": base64.b64encode(b"s3cret").decode()}})
    script = ("import os, sys, time; e = os.environ; "
              "print('argv', *sys.argv[1:], flush=True); "
              "print('env', e['POD_IP'], e['BIND_HOST'], e['MY_NAME'], e['MY_NS'], e['MODE'], "
              "e['TOKEN'], e['CFG_MODE'], e['URL'], 'KUBECONFIG' in e, "
              "flush=True); time.sleep(600)")
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "printer", ["python", "-c", script], container={
            "args": ["$(POD_IP)", "$$(POD_IP)", "$(UNDEFINED)"],
            "env": [
                {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                 "key": "TOKEN"}}},
                {"name": "URL", "value": "http://$(POD_IP):8000"},
            ],
            "envFrom": [{"configMapRef": {"name": "settings"}},
                        {"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        }))

    def logged() -> str | None:
        out = cluster.kubectl("-n", namespace, "logs", "printer", check=False)
        return out if "env " in out else None
    out = wait_until(logged, what="the pod's output in kubectl logs")
    ip = cluster.core.read_namespaced_pod("printer", namespace).status.pod_ip
    assert f"argv {ip} $(POD_IP) $(UNDEFINED)" in out
    assert f"env {ip} {ip} printer {namespace} fast s3cret fast http://{ip}:8000 False" in out


def test_a_pod_whose_process_dies_is_restarted(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(600)"]))
    first = wait_until(lambda: (s := container_status(cluster, namespace, "sleeper"))
                       and s.ready and s, what="the container running")
    os.kill(pid_of(first), signal.SIGKILL)

    def restarted() -> Any:
        s = container_status(cluster, namespace, "sleeper")
        return s if s.restart_count >= 1 and s.ready and s.state.running else None
    again = wait_until(restarted, what="a restart after the process died")
    assert pid_of(again) != pid_of(first)
    assert again.last_state.terminated.exit_code == 128 + signal.SIGKILL
    assert again.last_state.terminated.signal == signal.SIGKILL
    assert cluster.core.read_namespaced_pod("sleeper", namespace).status.phase == "Running"


def test_a_failing_liveness_probe_restarts_the_container(cluster: Cluster,
                                                         namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "unwell", [sys.executable, "-c", "import time; time.sleep(600)"], container={
            "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                              "failureThreshold": 2}}))
    status = wait_until(lambda: (s := container_status(cluster, namespace, "unwell"))
                        and s.restart_count >= 1 and s, what="a liveness restart")
    assert status.last_state.terminated is not None
    events = cluster.core.list_namespaced_event(namespace).items
    assert any(e.reason == "Unhealthy" and e.involved_object.name == "unwell" for e in events)


def test_restart_policies_end_in_the_right_phase(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "fails", [sys.executable, "-c", "raise SystemExit(3)"], restartPolicy="Never"))
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "succeeds", [sys.executable, "-c", "print('done')"], restartPolicy="OnFailure"))
    failed = wait_until(lambda: (p := cluster.core.read_namespaced_pod("fails", namespace))
                        .status.phase == "Failed" and p, what="phase Failed")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 3
    assert failed.status.container_statuses[0].restart_count == 0
    done = wait_until(lambda: (p := cluster.core.read_namespaced_pod("succeeds", namespace))
                      .status.phase == "Succeeded" and p, what="phase Succeeded")
    assert done.status.container_statuses[0].state.terminated.reason == "Completed"
    assert not is_ready(done)


def test_deletion_sends_sigterm_then_the_pod_is_gone(cluster: Cluster, namespace: str,
                                                     tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    script = ("import signal, sys, time, pathlib\n"
              "def bye(*_):\n"
              f"    pathlib.Path({str(marker)!r}).write_text('TERM')\n"
              "    sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\n"
              "time.sleep(600)\n")
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "polite", [sys.executable, "-c", script], terminationGracePeriodSeconds=20))
    running = wait_until(lambda: (s := container_status(cluster, namespace, "polite"))
                         and s.ready and s, what="the container running")
    pid = pid_of(running)
    cluster.kubectl("-n", namespace, "delete", "pod", "polite", "--timeout=60s")
    assert marker.read_text() == "TERM"
    assert not cluster.core.list_namespaced_pod(namespace).items
    wait_until(lambda: not _alive(pid), what="the process gone")


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
        cluster: Cluster, namespace: str) -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "time.sleep(600)")
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "stubborn", [sys.executable, "-c", script], terminationGracePeriodSeconds=1))
    running = wait_until(lambda: (s := container_status(cluster, namespace, "stubborn"))
                         and s.ready and s, what="the container running")
    cluster.kubectl("-n", namespace, "delete", "pod", "stubborn", "--timeout=60s")
    wait_until(lambda: not _alive(pid_of(running)), what="the process killed")


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_volumes_are_linked_at_their_mount_path(cluster: Cluster, namespace: str,
                                                tmp_path: Path) -> None:
    cluster.core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "files"}, "data": {"app.conf": "threads=4\n"}})
    conf_at, scratch_at = tmp_path / "conf", tmp_path / "scratch"
    script = (f"import pathlib, time; print(pathlib.Path({str(conf_at)!r}, 'app.conf')"
              f".read_text(), flush=True); pathlib.Path({str(scratch_at)!r}, 'out').write_text"
              "('written'); time.sleep(600)")
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "mounts", [sys.executable, "-c", script],
        volumes=[{"name": "conf", "configMap": {"name": "files"}},
                 {"name": "scratch", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "conf", "mountPath": str(conf_at)},
                                    {"name": "scratch", "mountPath": str(scratch_at)}]}))
    wait_until((scratch_at / "out").exists, what="the emptyDir written")
    assert (scratch_at / "out").read_text() == "written"
    assert "threads=4" in cluster.kubectl("-n", namespace, "logs", "mounts")
    cluster.kubectl("-n", namespace, "delete", "pod", "mounts", "--timeout=60s")
    wait_until(lambda: not conf_at.is_symlink() and not scratch_at.is_symlink(),
               what="the mount links removed with the pod")


def test_a_missing_configmap_is_reported_and_the_pod_starts_once_it_exists(
        cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "patient", [sys.executable, "-c", "import time; time.sleep(600)"], container={
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later",
                                                                    "key": "x"}}}]}))
    waiting = wait_until(lambda: (s := container_status(cluster, namespace, "patient"))
                         and s.state.waiting
                         and s.state.waiting.reason == "CreateContainerConfigError" and s,
                         what="CreateContainerConfigError")
    assert "later" in waiting.state.waiting.message
    cluster.core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "later"}, "data": {"x": "1"}})
    wait_until(lambda: (s := container_status(cluster, namespace, "patient")) and s.ready,
               what="the pod running once the ConfigMap exists")


def test_a_container_without_a_command_is_a_clear_error(cluster: Cluster,
                                                        namespace: str) -> None:
    manifest = pod_manifest("imageonly", [])
    del manifest["spec"]["containers"][0]["command"]
    cluster.core.create_namespaced_pod(namespace, manifest)
    status = wait_until(lambda: (s := container_status(cluster, namespace, "imageonly"))
                        and s.state.waiting
                        and s.state.waiting.reason == "CreateContainerConfigError" and s,
                        what="CreateContainerConfigError")
    assert "does not use images" in status.state.waiting.message


def test_a_command_that_does_not_exist_crash_loops_with_its_reason(
        cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "typo", ["no-such-program-brix"]))

    def looping() -> Any:
        s = container_status(cluster, namespace, "typo")
        return s if s and s.last_state.terminated and s.restart_count >= 1 else None
    status = wait_until(looping, what="a crash loop")
    assert status.last_state.terminated.reason == "StartError"
    assert "no-such-program-brix" in (status.last_state.terminated.message or
                                      status.state.waiting.message or "")


def test_init_containers_run_first_and_in_order(cluster: Cluster, namespace: str,
                                                tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    step = (f"import pathlib, sys; p = pathlib.Path({str(shared)!r}, 'steps'); "
            "p.write_text((p.read_text() if p.exists() else '') + sys.argv[1] + ' ')")
    main = (f"import pathlib, time; print('saw', pathlib.Path({str(shared)!r}, 'steps')"
            ".read_text(), flush=True); time.sleep(600)")
    manifest = pod_manifest("ordered", [sys.executable, "-c", main],
                            volumes=[{"name": "shared", "emptyDir": {}}],
                            container={"volumeMounts": [{"name": "shared",
                                                         "mountPath": str(shared)}]})
    manifest["spec"]["initContainers"] = [
        {"name": f"init-{n}", "image": "unused", "command": [sys.executable, "-c", step, n],
         "volumeMounts": [{"name": "shared", "mountPath": str(shared)}]}
        for n in ("one", "two")]
    cluster.core.create_namespaced_pod(namespace, manifest)
    wait_until(lambda: (s := container_status(cluster, namespace, "ordered")) and s.ready,
               what="the main container running after its init containers")
    pod = cluster.core.read_namespaced_pod("ordered", namespace)
    inits = pod.status.init_container_statuses
    assert [s.state.terminated.exit_code for s in inits] == [0, 0]
    assert "saw one two" in cluster.kubectl("-n", namespace, "logs", "ordered", "-c", "main")


def test_a_failed_init_container_fails_a_never_restarting_pod(cluster: Cluster,
                                                             namespace: str) -> None:
    manifest = pod_manifest("blocked", [sys.executable, "-c", "print('never runs')"],
                            restartPolicy="Never")
    manifest["spec"]["initContainers"] = [
        {"name": "check", "image": "unused", "command": [sys.executable, "-c", "exit(4)"]}]
    cluster.core.create_namespaced_pod(namespace, manifest)
    pod = wait_until(lambda: (p := cluster.core.read_namespaced_pod("blocked", namespace))
                     .status.phase == "Failed" and p, what="phase Failed")
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 4
    main = pod.status.container_statuses[0]
    assert main.state.waiting is not None
    assert main.state.waiting.reason == "PodInitializing"


def test_a_startup_probe_holds_readiness_until_it_passes(cluster: Cluster, namespace: str,
                                                         tmp_path: Path) -> None:
    gate = tmp_path / "open"
    script = ("import os, sys, time, http.server\n"
              f"while not os.path.exists({str(gate)!r}):\n"
              "    time.sleep(0.1)\n"
              "http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, "
              "bind=os.environ['POD_IP'], port=8000)\n")
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "slowstart", [sys.executable, "-c", script], container={
            "ports": [{"name": "http", "containerPort": 8000}],
            "startupProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1,
                             "failureThreshold": 600},
            "livenessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1},
        }))
    running = wait_until(lambda: (s := container_status(cluster, namespace, "slowstart"))
                         and s.state.running and s, what="the process running")
    assert not running.started
    assert not running.ready
    gate.write_text("go")
    status = wait_until(lambda: (s := container_status(cluster, namespace, "slowstart"))
                        and s.started and s.ready and s, what="started and ready")
    assert status.restart_count == 0


def test_repeated_probe_failures_are_one_event_with_a_count(cluster: Cluster,
                                                            namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "neverready", [sys.executable, "-c", "import time; time.sleep(600)"], container={
            "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1}}))

    def unhealthy() -> list[Any]:
        return [e for e in cluster.core.list_namespaced_event(namespace).items
                if e.reason == "Unhealthy" and e.involved_object.name == "neverready"]
    counted = wait_until(lambda: [e for e in unhealthy() if (e.count or 0) >= 2],
                         what="the Unhealthy event counted again", timeout=90)
    assert len(unhealthy()) == 1
    assert counted[0].type == "Warning"
    assert "Readiness probe failed" in counted[0].message


def test_an_unsupported_volume_type_is_a_clear_error(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "claims", [sys.executable, "-c", "import time; time.sleep(600)"],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]))
    status = wait_until(lambda: (s := container_status(cluster, namespace, "claims"))
                        and s.state.waiting
                        and s.state.waiting.reason == "CreateContainerConfigError" and s,
                        what="CreateContainerConfigError")
    assert "persistentVolumeClaim" in status.state.waiting.message
    assert "not supported by localkube" in status.state.waiting.message


def test_an_unsupported_probe_action_fails_the_probe_with_a_reason(cluster: Cluster,
                                                                   namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "grpcprobe", [sys.executable, "-c", "import time; time.sleep(600)"], container={
            "readinessProbe": {"grpc": {"port": 9000}, "periodSeconds": 1}}))

    def reported() -> list[Any]:
        return [e for e in cluster.core.list_namespaced_event(namespace).items
                if e.reason == "Unhealthy" and e.involved_object.name == "grpcprobe"]
    (event,) = wait_until(reported, what="an Unhealthy event")
    assert "not supported by localkube" in event.message
    assert not container_status(cluster, namespace, "grpcprobe").ready


def test_host_network_pods_get_the_node_address(cluster: Cluster, namespace: str) -> None:
    script = "import os, time; print('bind', os.environ['BIND_HOST'], flush=True); time.sleep(600)"
    cluster.core.create_namespaced_pod(namespace, pod_manifest(
        "onhost", [sys.executable, "-c", script], hostNetwork=True))
    pod = wait_until(lambda: (p := cluster.core.read_namespaced_pod("onhost", namespace))
                     .status.pod_ip and p, what="the pod's address")
    assert pod.status.pod_ip == "127.0.0.1"
    wait_until(lambda: "bind 127.0.0.1" in cluster.kubectl("-n", namespace, "logs", "onhost",
                                                          check=False),
               what="BIND_HOST in the output")
