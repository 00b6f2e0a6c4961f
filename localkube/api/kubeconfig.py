"""The kubeconfig localkube writes for kubectl, the ``kubernetes`` client and Kopf."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "localkube"


def kubeconfig(server_url: str, *, token: str, ca_pem: bytes | None = None,
               namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig with one cluster (its CA embedded), one user (the admin, by ``token``)
    and one current context."""
    cluster: dict[str, Any] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": cluster}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {
            "cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server_url: str, *, token: str,
                     ca_pem: bytes | None = None) -> Path:
    """Write the kubeconfig atomically (readers never see half a file); return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    text = yaml.safe_dump(kubeconfig(server_url, token=token, ca_pem=ca_pem), sort_keys=False)
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path
