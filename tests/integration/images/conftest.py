"""The images of docker/, built once for this folder by ``make images``' own code.

The build is cached by podman's layers: after the first build (minutes) it takes
seconds. Skipped only where neither podman nor docker is installed; ``make test``
installs podman as root.
"""

from __future__ import annotations

import shutil

import pytest

from brix.images.builder import ImageError, build_images

LIGHT = ("gateway", "sidecar", "controller")
"""The images every run builds; the engine's (vLLM) has its own marker and fixture."""


@pytest.fixture(scope="session")
def built_images() -> list[str]:
    if shutil.which("podman") is None and shutil.which("docker") is None:
        pytest.skip("neither podman nor docker is installed (make test installs podman)")
    try:
        return build_images(LIGHT, say=lambda line: print(f"images: {line}", flush=True))
    except ImageError as exc:
        pytest.fail(str(exc))
