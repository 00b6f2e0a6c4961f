"""TLS and mTLS on the gRPC side (KEDA's enableTLS / caCert / tlsClientCert), and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.helpers.procs import REPO, ProcessGroup
from tests.helpers.scaler import make_certificates, scaled_object_ref, scaler_stub, start_scaler

NO_PROMETHEUS = "http://127.0.0.1:9"  # GetMetricSpec needs no Prometheus


def spec_target(channel: grpc.Channel) -> float:
    response = scaler_stub(channel).GetMetricSpec(
        scaled_object_ref(model="m", target="3"), timeout=10)
    return float(response.metricSpecs[0].targetSizeFloat)


def test_tls(procs: ProcessGroup, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    scaler = start_scaler(procs, prometheus_url=NO_PROMETHEUS, extra_args=[
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)])
    assert scaler.tls
    with scaler.channel(credentials=certs.client_credentials(with_client_cert=False)) as ch:
        assert spec_target(ch) == 3.0
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with scaler.channel() as plaintext, pytest.raises(grpc.RpcError) as info:
        spec_target(plaintext)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate(procs: ProcessGroup, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    scaler = start_scaler(procs, prometheus_url=NO_PROMETHEUS, extra_args=[
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
        "--tls-client-ca", str(certs.ca)])
    with scaler.channel(credentials=certs.client_credentials(with_client_cert=True)) as ch:
        assert spec_target(ch) == 3.0
    with scaler.channel(credentials=certs.client_credentials(with_client_cert=False)) as ch, \
            pytest.raises(grpc.RpcError) as info:
        spec_target(ch)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    strangers = make_certificates(tmp_path / "other-ca")  # a client cert from another CA
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certs.ca.read_bytes(),
        private_key=strangers.client_key.read_bytes(),
        certificate_chain=strangers.client_cert.read_bytes())
    with scaler.channel(credentials=credentials) as ch, pytest.raises(grpc.RpcError) as info:
        spec_target(ch)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "scaler", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO, env=full_env, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (["--mode", "sideways"], "--mode"),
    (["--grpc-port", "http"], "--grpc-port"),
    (["--tls-cert", "/x.pem"], "--tls-cert and --tls-key"),
    (["--cache-ttl", "-1"], "--cache-ttl"),
])
def test_bad_flags_exit_with_one_clear_line(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_certificate_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("--mode", "keda", "--grpc-port", "0", "--http-port", "0",
                     "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key"))
    assert result.returncode != 0
    assert "--tls-cert: cannot read" in result.stderr
    assert "no.crt" in result.stderr


def test_loop_without_kubernetes_says_so() -> None:
    result = run_cli("--grpc-port", "0", "--http-port", "0",
                     env={"KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": ""})
    assert result.returncode == 2
    assert "--mode both" in result.stderr
    assert "--mode keda" in result.stderr


def test_every_flag_reads_its_environment_variable(procs: ProcessGroup) -> None:
    scaler = start_scaler(procs, prometheus_url=NO_PROMETHEUS,
                          env={"BRIX_STREAM_INTERVAL": "0.25", "BRIX_LOG_LEVEL": "DEBUG"})
    assert "'stream_interval': 0.25" in scaler.proc.output()


@pytest.mark.parametrize("side", ["grpc", "http"])
def test_a_busy_port_is_a_clear_error(procs: ProcessGroup, side: str) -> None:
    first = start_scaler(procs, prometheus_url=NO_PROMETHEUS)
    assert first.grpc_target is not None
    busy = (first.grpc_target if side == "grpc" else first.http_url).rsplit(":", 1)[1]
    ports = {"grpc": "0", "http": "0", side: busy}
    result = run_cli("--mode", "keda", "--grpc-port", ports["grpc"], "--http-port", ports["http"],
                     env={"BIND_HOST": "127.0.0.1"})
    assert result.returncode == 1
    assert f"could not listen on 127.0.0.1:{busy}" in result.stderr
    assert f"--{side}-port" in result.stderr
