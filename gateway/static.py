"""Endpoints from configuration: fixed URLs and service mode.

Service mode maps a model to a Kubernetes Service, as in ``llama-70b`` ->
``llama-70b-svc``: for clusters where the gateway may not watch pods, the
Service's own load balancing spreads the requests and the gateway sends every
request for the model to its DNS name.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from brix.contract import ENGINE_PORT
from gateway.table import Endpoint


class ConfigError(ValueError):
    """A route in the configuration that cannot be used."""


def _split(entry: str, what: str) -> tuple[str, str]:
    model, sep, target = entry.partition("=")
    model, target = model.strip(), target.strip()
    if not sep or not model or not target:
        target_name = "URL" if what == "route" else "SERVICE"
        raise ConfigError(f"{what} {entry!r}: expected MODEL={target_name}")
    return model, target


def parse_static_routes(entries: Iterable[str]) -> dict[str, list[Endpoint]]:
    """``MODEL=URL`` entries -> endpoints per model (a model may repeat)."""
    out: dict[str, list[Endpoint]] = {}
    for entry in entries:
        model, url = _split(entry, "route")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"route {entry!r}: {url!r} is not an http(s) URL")
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        out.setdefault(model, []).append(Endpoint(name=parts.netloc, url=base))
    return out


def service_endpoint(target: str) -> Endpoint:
    """``SERVICE[.NAMESPACE][:PORT]`` (or a URL) -> the Service's endpoint."""
    if "://" in target:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"service {target!r} is not an http(s) URL")
        return Endpoint(name=parts.hostname, url=f"{parts.scheme}://{parts.netloc}")
    host, sep, port = target.rpartition(":")
    if not sep:
        host, port = target, str(ENGINE_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"service {target!r}: expected SERVICE[.NAMESPACE][:PORT]")
    return Endpoint(name=host, url=f"http://{host}:{int(port)}")


def parse_services(entries: Iterable[str]) -> dict[str, list[Endpoint]]:
    """``MODEL=SERVICE[.NAMESPACE][:PORT]`` entries -> one endpoint per model."""
    out: dict[str, list[Endpoint]] = {}
    for entry in entries:
        model, target = _split(entry, "service")
        if model in out:
            raise ConfigError(f"service {entry!r}: model {model!r} is mapped twice")
        out[model] = [service_endpoint(target)]
    return out
