"""The pure part of ``make images``: what to build, and with which settings.

Nothing here runs a command or reads a file; ``brix.images.builder`` does that
and hands the text over.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

import yaml

LOCAL_BASE = "localhost/brix-base-python:3.11"
"""The Python base built from Debian packages when the default cannot be pulled."""

DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("python3-venv", "python3-pip", "python-is-python3", "ca-certificates")

_COMPONENTS = {"gateway", "sidecar", "controller", "engine"}

INPUTS_LABEL = "dev.brix.inputs"
"""The image label holding the key of the inputs it was built from (``inputs_key``)."""


class PlanError(ValueError):
    """Input that names no image we know how to build."""


@dataclass(frozen=True)
class Build:
    """One image: ``tag`` from ``docker/Dockerfile.<component>`` at ``target``."""

    tag: str
    component: str
    target: str | None = None

    @property
    def dockerfile(self) -> str:
        return f"docker/Dockerfile.{self.component}"

    @property
    def needs_gpu_base(self) -> bool:
        """Built on vLLM's official image (not on the Python base)."""
        return self.component == "engine" and self.target == "gpu"


def manifest_images(documents: Iterable[str]) -> set[str]:
    """Every ``image:`` of the containers in these YAML texts."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for container in value:
                        if isinstance(container, dict) and isinstance(container.get("image"), str):
                            found.add(container["image"])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for text in documents:
        for doc in yaml.safe_load_all(text):
            walk(doc)
    return found


def build_for(image: str) -> Build:
    """The Dockerfile and target that make ``image`` (``brix/<component>:<tag>``).

    The engine's ``-cpu`` tags are the ``cpu`` target, its others the ``gpu`` one.
    """
    m = re.fullmatch(r"(?:localhost/)?brix/([a-z]+):([\w.-]+)", image)
    if m is None or m.group(1) not in _COMPONENTS:
        raise PlanError(f"{image!r} is not a brix image "
                        "(brix/<gateway|sidecar|controller|engine>:TAG)")
    component, tag = m.group(1), m.group(2)
    target = None
    if component == "engine":
        target = "cpu" if tag.endswith("-cpu") else "gpu"
    return Build(tag=f"brix/{component}:{tag}", component=component, target=target)


def plan(images: Iterable[str], only: Iterable[str] = ()) -> list[Build]:
    """The builds for the brix images named, in a stable order (the engine last: it is slow).

    ``only`` keeps the components named (e.g. ``gateway``); an unknown one is an error.
    """
    wanted = set(only)
    unknown = wanted - _COMPONENTS
    if unknown:
        raise PlanError(f"unknown component(s) {', '.join(sorted(unknown))}: "
                        f"choose from {', '.join(sorted(_COMPONENTS))}")
    builds = {build_for(i) for i in images if re.match(r"(?:localhost/)?brix/", i)}
    if wanted:
        builds = {b for b in builds if b.component in wanted}
    return sorted(builds, key=lambda b: (b.component == "engine", b.component, b.tag))


def dockerfile_arg(dockerfile: str, name: str) -> str | None:
    """The default of ``ARG name=...`` in a Dockerfile's text."""
    m = re.search(rf"^ARG\s+{re.escape(name)}=(\S+)\s*$", dockerfile, re.MULTILINE)
    return m.group(1) if m else None


def apt_mirror(sources: Iterable[str]) -> str:
    """The Debian mirror of apt's sources (deb822 ``URIs:`` or one-line ``deb URL``).

    The first non-security mirror wins; there must be one.
    """
    candidates: list[str] = []
    for text in sources:
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("#"):
                continue
            m = re.match(r"URIs:\s*(\S+)", line) or re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
            if m:
                candidates.append(m.group(1))
    for url in candidates:
        if not url.rstrip("/").endswith("-security"):
            return url
    raise PlanError("no Debian mirror in apt's sources (/etc/apt/sources.list*)")


_PIP_KEYS = ("index-url", "extra-index-url", "find-links", "cert", "constraint", "trusted-host")


def pip_settings(config_list: str) -> dict[str, str]:
    """pip's settings from ``pip config list`` that matter to a build inside an image.

    Lines look like ``global.index-url='https://...'`` or ``:env:.cert='...'``;
    the environment's value wins over the files' (as in pip).
    """
    files: dict[str, str] = {}
    env: dict[str, str] = {}
    for line in config_list.splitlines():
        m = re.match(r"(?P<section>[^.=]*)\.(?P<key>[\w-]+)='(?P<value>.*)'\s*$", line.strip())
        if m is None or m.group("key") not in _PIP_KEYS:
            continue
        target = env if m.group("section") == ":env:" else files
        target[m.group("key")] = m.group("value")
    return {**files, **env}


def local_paths(settings: Mapping[str, str]) -> list[str]:
    """The host paths pip's settings name (files, folders, ``file://`` indexes' folders)."""
    paths: list[str] = []
    for key in ("cert", "constraint", "find-links", "index-url", "extra-index-url"):
        for value in settings.get(key, "").split():
            if value.startswith("file://"):
                # A local index's pages link to files beside it (``../files/``):
                # its parent folder goes in whole.
                path = str(PurePosixPath(urlparse(value).path.rstrip("/")).parent)
            elif value.startswith("/"):
                path = value
            else:
                continue
            if path not in paths:
                paths.append(path)
    return paths


def pip_conf(settings: Mapping[str, str]) -> str:
    """A pip.conf carrying ``settings`` into a build (the host's paths are mounted as they are)."""
    lines = ["[global]"]
    for key in _PIP_KEYS:
        if settings.get(key):
            lines.append(f"{key} = {settings[key]}")
    return "\n".join(lines) + "\n"


def qualified(image: str) -> str:
    """``image`` with its registry, as Docker reads a short name.

    ``python:3`` -> ``docker.io/library/python:3``.
    """
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile's ``COPY``/``ADD`` read (not ``--from`` a stage).

    Every stage's, in order, each once.
    """
    joined = re.sub(r"\\\n", " ", dockerfile)
    sources: list[str] = []
    for raw in joined.splitlines():
        m = re.match(r"\s*(COPY|ADD)\s+(.*)$", raw, re.IGNORECASE)
        if m is None:
            continue
        rest = m.group(2).strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(a.startswith("--from=") for a in args):
            continue
        for src in [a for a in args if not a.startswith("--")][:-1]:
            path = str(PurePosixPath(src))
            if path not in sources:
                sources.append(path)
    return sources


def inputs_key(*, dockerfile: str, target: str | None, base: str,
               build_args: Mapping[str, str], files: Mapping[str, str]) -> str:
    """A key that changes when anything an image is built from changes.

    ``dockerfile`` is its text, ``base`` the identity (image id) of the base it
    builds on, ``files`` each context file it copies with the digest of its
    content. Equal keys mean a build would make the same image, so it can be
    skipped without asking the builder.
    """
    document = {"dockerfile": dockerfile, "target": target, "base": base,
                "build_args": dict(build_args), "files": dict(files)}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
