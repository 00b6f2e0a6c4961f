"""Render the ``local`` kustomize overlay and fill in its placeholders.

The overlay in ``k8s/overlays/local`` is the cluster's manifests with a few
patches; the values that only exist on this machine are written as
``${NAME}`` placeholders (as Flux's post-build substitution does) and filled
in here: ``BRIX_ROOT`` (the project directory) and ``PROMETHEUS_URL``. An
unknown placeholder is an error, never left in a manifest.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")

Obj = dict[str, Any]


class OverlayError(Exception):
    """The overlay could not be rendered or a placeholder has no value."""


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``${NAME}`` in ``text``; fail on a name with no value."""
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(values))
    if missing:
        raise OverlayError(f"no value for placeholder(s): {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render(overlay: Path, *, kubectl: str, values: Mapping[str, str]) -> list[Obj]:
    """``kubectl kustomize overlay`` with the placeholders filled in."""
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise OverlayError(f"kubectl kustomize {overlay} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(substitute(result.stdout, values)) if doc]


def select(objects: Iterable[Obj], drop: Callable[[Obj], bool]) -> list[Obj]:
    """The objects ``drop`` does not reject (tests leave out the real-vLLM model)."""
    return [o for o in objects if not drop(o)]


def is_crd(obj: Obj) -> bool:
    return bool(obj.get("kind") == "CustomResourceDefinition")


def apply(objects: Iterable[Obj], *, kubectl: str, kubeconfig: Path) -> str:
    """``kubectl apply -f -`` the objects (CRDs first, then the rest); return kubectl's output."""
    objs = list(objects)
    out = []
    for batch in ([o for o in objs if is_crd(o)], [o for o in objs if not is_crd(o)]):
        if not batch:
            continue
        result = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
            input=yaml.safe_dump_all(batch), capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise OverlayError(f"kubectl apply failed: {result.stderr.strip()}")
        out.append(result.stdout)
    return "".join(out)
