"""The /dev/shm a container test gives the engine: the manifest's memory emptyDir, in bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from localkube.node.envbuild import EnvError
from tests.helpers.images import shm_flags

POD = """
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: engine
          image: e:1
          volumeMounts: [{{name: shm, mountPath: /dev/shm}}]
        - name: other
          image: o:1
      volumes:
        - name: shm
          emptyDir: {empty_dir}
"""


def _manifest(tmp_path: Path, empty_dir: str) -> str:
    path = tmp_path / "deployment.yaml"
    path.write_text(POD.format(empty_dir=empty_dir))
    return str(path)


def test_the_tiny_llama_engine_gets_its_1gi_of_shared_memory() -> None:
    assert shm_flags("k8s/models/tiny-llama/deployment.yaml", "brix/engine:0.1.0-cpu") == [
        "--shm-size", str(2**30)]


@pytest.mark.parametrize(("empty_dir", "flags"), [
    ("{medium: Memory, sizeLimit: 512Mi}", ["--shm-size", str(512 * 2**20)]),
    ("{medium: Memory, sizeLimit: 2G}", ["--shm-size", str(2 * 10**9)]),
    ("{medium: Memory}", ["--shm-size", str(2**30)]),
    ("{sizeLimit: 512Mi}", []),  # on disk: not a tmpfs
])
def test_the_size_is_the_memory_volumes_limit(tmp_path: Path, empty_dir: str,
                                              flags: list[str]) -> None:
    manifest = _manifest(tmp_path, empty_dir)
    assert shm_flags(manifest, "e:1") == flags
    assert shm_flags(manifest, "o:1") == []  # mounts no /dev/shm


def test_a_size_that_is_no_quantity_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EnvError, match="bad quantity '1 gig'"):
        shm_flags(_manifest(tmp_path, "{medium: Memory, sizeLimit: 1 gig}"), "e:1")
