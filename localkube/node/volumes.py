"""Volumes: made under the state directory, shown at their mountPath by a symlink.

There are no containers, so a process cannot see a volume at its
``mountPath`` the way a container would. localkube makes each volume under
``<state_dir>/pods/<namespace>/<pod>-<uid>/volumes/<volume>`` (``emptyDir``;
``configMap`` and ``secret`` with one file per key, or the ``items`` chosen;
``hostPath`` is the host path itself, created for ``DirectoryOrCreate``) and
then, for each ``volumeMount``, creates a symlink at the ``mountPath`` pointing
there **only when** the mountPath does not exist yet and its parent directory
exists and is writable. Otherwise the mount is not visible at that path, which
is reported in the result; brix's own manifests pass paths through env and
args, so they do not depend on it. A link another live pod made is left to it
(only a link whose volume is gone is replaced), and the links are removed with
their pod. ``readOnly``, ``subPathExpr``, ownership and modes are not applied,
except that an ``emptyDir`` is writable by every user (mode 0777, as the
kubelet makes it), so a container running as its non-root user (the podman
runtime) can write its ``/tmp`` or ``/dev/shm`` there.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JsonObj = dict[str, Any]

EMPTY_DIR_MODE = 0o777
"""The kubelet's mode for an emptyDir: any user of the pod may write it."""


class VolumeError(Exception):
    """A volume cannot be made (a missing ConfigMap or Secret, an unsupported type)."""


@dataclass
class Mounts:
    """What was made for one pod."""

    volumes: dict[str, Path] = field(default_factory=dict)
    links: list[Path] = field(default_factory=list)
    not_linked: list[str] = field(default_factory=list)


def referenced_names(pod: JsonObj) -> tuple[set[str], set[str]]:
    """(ConfigMap names, Secret names) that the pod's volumes use."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        if "configMap" in vol:
            cms.add(str(vol["configMap"].get("name", "")))
        if "secret" in vol:
            secrets.add(str(vol["secret"].get("secretName", "")))
    return cms, secrets


def _files(data: Mapping[str, bytes], items: list[JsonObj] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    out = {}
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            raise VolumeError(f"key {key!r} not found")
        out[str(item.get("path") or key)] = data[key]
    return out


def _write_files(root: Path, files: Mapping[str, bytes]) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for rel, content in files.items():
        target = (root / rel).resolve()
        if not target.is_relative_to(root.resolve()):
            raise VolumeError(f"path {rel!r} leaves the volume")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _configmap_bytes(cm: JsonObj) -> dict[str, bytes]:
    out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        out[k] = base64.b64decode(str(v))
    return out


def _secret_bytes(secret: JsonObj) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VolumeError(f"secret key {k!r} is not valid base64") from exc
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def make_volumes(pod: JsonObj, pod_dir: Path, *, configmaps: Mapping[str, JsonObj],
                 secrets: Mapping[str, JsonObj]) -> dict[str, Path]:
    """Create every volume of the pod; return volume name -> its directory."""
    out: dict[str, Path] = {}
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = str(vol.get("name", ""))
        path = pod_dir / "volumes" / name
        if "emptyDir" in vol:
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(EMPTY_DIR_MODE)  # whatever the umask
        elif "configMap" in vol:
            src = vol["configMap"]
            cm = configmaps.get(str(src.get("name", "")))
            if cm is None:
                if src.get("optional"):
                    path.mkdir(parents=True, exist_ok=True)
                    out[name] = path
                    continue
                raise VolumeError(f'configmap "{src.get("name")}" not found')
            _write_files(path, _files(_configmap_bytes(cm), src.get("items")))
        elif "secret" in vol:
            src = vol["secret"]
            secret = secrets.get(str(src.get("secretName", "")))
            if secret is None:
                if src.get("optional"):
                    path.mkdir(parents=True, exist_ok=True)
                    out[name] = path
                    continue
                raise VolumeError(f'secret "{src.get("secretName")}" not found')
            _write_files(path, _files(_secret_bytes(secret), src.get("items")))
        elif "hostPath" in vol:
            src = vol["hostPath"]
            path = Path(str(src.get("path", "")))
            kind = str(src.get("type") or "")
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate" and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            elif kind and kind not in ("DirectoryOrCreate", "FileOrCreate") and not path.exists():
                raise VolumeError(f"hostPath {path} does not exist")
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise VolumeError(f"volume {name!r}: type {kinds} is not supported by localkube "
                              "(emptyDir, configMap, secret and hostPath are)")
        out[name] = path
    return out


def link_mounts(container: JsonObj, volumes: Mapping[str, Path], state_dir: Path,
                mounts: Mounts) -> None:
    """Symlink each volumeMount's mountPath to its volume where that is possible."""
    for mount in container.get("volumeMounts") or []:
        name = str(mount.get("name", ""))
        if name not in volumes:
            raise VolumeError(f"volumeMount {name!r} names no volume of the pod")
        source = volumes[name] / str(mount.get("subPath") or "")
        if mount.get("subPath"):
            source.mkdir(parents=True, exist_ok=True)
        target = Path(str(mount.get("mountPath", "")))
        if _points_at(target, source):
            continue
        if target.is_symlink() and _ours(target, state_dir) and not target.exists():
            target.unlink()  # left by a pod that is gone (its volume was removed)
        parent = target.parent
        if (not target.exists() and not target.is_symlink() and parent.is_dir()
                and os.access(parent, os.W_OK)):
            target.symlink_to(source)
            mounts.links.append(target)
        else:
            mounts.not_linked.append(str(target))


def _points_at(target: Path, source: Path) -> bool:
    try:
        return target.exists() and target.resolve() == source.resolve()
    except OSError:
        return False


def _ours(link: Path, state_dir: Path) -> bool:
    try:
        return Path(os.readlink(link)).is_relative_to(state_dir)
    except OSError:
        return False


def remove_links(mounts: Mounts, pod_dir: Path) -> None:
    """Remove the symlinks made for a pod (those that still point into its directory)."""
    for link in mounts.links:
        try:
            if link.is_symlink() and Path(os.readlink(link)).is_relative_to(pod_dir):
                link.unlink()
        except OSError:
            pass
    mounts.links.clear()
