"""``make images``: build every image of ``docker/`` with docker or podman.

docker is used when its daemon answers, else podman. The Python base named in
the Dockerfiles is used when it is there or can be pulled; where it cannot, a
local one is built from Debian packages (debootstrap, with this machine's CA
certificates, so pip works behind a TLS-inspecting proxy). pip's settings of
this machine (``pip config list``: index, extra indexes, find-links, CA bundle,
constraints) go into every build as a mounted pip.conf, with the local paths
they name mounted read-only, so nothing about this machine is written into the
repository. Builds use the engine's layer cache: a second run with nothing
changed takes seconds: each image carries a label with the key of its inputs
(its Dockerfile, target, base image, build arguments, and every file it copies),
and an image whose label matches is not handed to the builder at all.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brix.images import plan as p

ROOT = Path(__file__).resolve().parents[2]
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PODMAN_RUNTIME = "runc"
"""crun fails here ("cgroups in hybrid mode not supported"); runc works."""
PODMAN_ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
"""runc/crun cannot raise the limits here ("setrlimit ... operation not permitted")."""

Say = Callable[[str], None]


class ImageError(RuntimeError):
    """A build that cannot go on; the message is one line saying what failed."""


@dataclass
class Tool:
    """The container engine: ``docker`` or ``podman``."""

    name: str

    @property
    def argv(self) -> list[str]:
        """The command and its global flags (podman: runc where it is installed)."""
        if self.name == "podman" and shutil.which(PODMAN_RUNTIME):
            return ["podman", "--runtime", PODMAN_RUNTIME]
        return [self.name]

    def run(self, *args: str, check: bool = True, quiet: bool = True,
            stdin: int | None = None) -> subprocess.CompletedProcess[str]:
        out = subprocess.PIPE if quiet else None
        return subprocess.run([*self.argv, *args], check=check, text=True, stdout=out,
                              stderr=subprocess.STDOUT if quiet else None, stdin=stdin)

    def exists(self, image: str) -> bool:
        if self.name == "podman":
            return self.run("image", "exists", image, check=False).returncode == 0
        return self.run("image", "inspect", image, check=False).returncode == 0

    def image_id(self, image: str) -> str | None:
        done = self.run("image", "inspect", "--format", "{{.Id}}", image, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def label(self, image: str, name: str) -> str | None:
        """The value of label ``name`` on ``image``; None when the image or label is not there."""
        done = self.run("image", "inspect", "--format",
                        f'{{{{ index .Config.Labels "{name}" }}}}', image, check=False)
        value = done.stdout.strip()
        return value if done.returncode == 0 and value and value != "<no value>" else None

    @property
    def run_flags(self) -> tuple[str, ...]:
        return PODMAN_ULIMITS if self.name == "podman" else ()


def find_tool() -> Tool:
    """docker when its daemon answers, else podman; else one line saying what to install."""
    if shutil.which("docker"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            ok = subprocess.run(["docker", "info"], check=False, capture_output=True,
                                timeout=15).returncode == 0
            if ok:
                return Tool("docker")
    if shutil.which("podman"):
        return Tool("podman")
    raise ImageError("no container engine: install podman (apt-get install podman) "
                     "or start a Docker daemon")


def manifest_builds(only: Sequence[str] = ()) -> list[p.Build]:
    texts = [f.read_text() for f in sorted((ROOT / "k8s").rglob("*.yaml"))]
    return p.plan(p.manifest_images(texts), only)


def context_files(sources: Sequence[str]) -> dict[str, str] | None:
    """Each file of the build context under ``sources`` with a digest of its content and mode.

    The files are those git sees (tracked, and untracked ones it does not
    ignore: .gitignore leaves out what .dockerignore does), ``sources`` being
    its pathspecs (``brix`` is the folder's files, not ``brixton``'s); None
    outside a git checkout, where no key can be made and every image is built.
    """
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                             "--", *sources], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        return None
    digests: dict[str, str] = {}
    for rel in filter(None, listed.stdout.decode().split("\0")):
        path = ROOT / rel
        if not path.is_file():  # deleted in the working tree, still in the index
            continue
        mode = "x" if os.access(path, os.X_OK) else "-"
        digests[rel] = f"{mode}{hashlib.sha256(path.read_bytes()).hexdigest()}"
    return digests


def host_pip_settings() -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         text=True, check=False).stdout
    settings = p.pip_settings(out)
    if "cert" not in settings and Path(HOST_CA_BUNDLE).exists():
        settings["cert"] = HOST_CA_BUNDLE
    return settings


@dataclass
class Builder:
    tool: Tool
    say: Say
    state: Path = field(default_factory=lambda: ROOT / ".brix" / "images")
    no_cache: bool = False
    """Rebuild every layer and every image, whatever its label says (for benchmarks)."""

    # --- the Python base ------------------------------------------------------

    def python_base_here(self, default: str) -> str | None:
        """The default base when it is here, else the local Debian one when that is; else None."""
        if self.tool.exists(default):
            return default
        if self.tool.exists(p.LOCAL_BASE):
            self.say(f"{default} is not here: using {p.LOCAL_BASE} (built from Debian packages)")
            return p.LOCAL_BASE
        return None

    def python_base(self, default: str) -> str:
        """The default base when it is here or can be pulled, else the local Debian one."""
        here = self.python_base_here(default)
        if here is not None:
            return here
        if self.tool.run("pull", "-q", p.qualified(default), check=False).returncode == 0:
            return default
        self.say(f"{default} cannot be pulled: building {p.LOCAL_BASE} from Debian packages "
                 f"(debootstrap {p.DEBIAN_SUITE}, with this machine's CA certificates)")
        self.build_local_base()
        return p.LOCAL_BASE

    def build_local_base(self) -> None:
        if shutil.which("debootstrap") is None:
            raise ImageError(f"cannot build {p.LOCAL_BASE}: debootstrap is missing "
                             "(apt-get install debootstrap)")
        if os.geteuid() != 0:
            raise ImageError(f"cannot build {p.LOCAL_BASE}: debootstrap needs root")
        files = sorted(glob.glob("/etc/apt/sources.list") + glob.glob("/etc/apt/sources.list.d/*"))
        sources = [Path(f).read_text() for f in files if Path(f).is_file()]
        try:
            mirror = p.apt_mirror(sources)
        except p.PlanError as e:
            raise ImageError(f"cannot build {p.LOCAL_BASE}: {e}") from None
        self.state.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.state, prefix="rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            log = self.state / "debootstrap.log"
            with log.open("w") as out:
                done = subprocess.run(
                    ["debootstrap", "--variant=minbase", f"--include={','.join(p.BASE_PACKAGES)}",
                     p.DEBIAN_SUITE, str(rootfs), mirror],
                    check=False, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise ImageError(f"cannot build {p.LOCAL_BASE}: debootstrap {p.DEBIAN_SUITE} from "
                                 f"{mirror} failed (see {log})")
            if Path(HOST_CA_BUNDLE).exists():
                shutil.copyfile(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.lstrip("/"))
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            assert tar.stdout is not None
            imported = self.tool.run("import", "-", p.LOCAL_BASE, check=False,
                                     stdin=tar.stdout.fileno())
            tar.stdout.close()
            tar.wait()
            if imported.returncode != 0 or tar.returncode != 0:
                raise ImageError(f"cannot build {p.LOCAL_BASE}: import failed: "
                                 f"{imported.stdout.strip().splitlines()[-1:]}")

    # --- the images -------------------------------------------------------------

    def pip_flags(self) -> list[str]:
        """Mounts that carry this machine's pip settings into RUN steps (podman only)."""
        if self.tool.name != "podman":
            return []
        settings = host_pip_settings()
        self.state.mkdir(parents=True, exist_ok=True)
        conf = self.state / "pip.conf"
        conf.write_text(p.pip_conf(settings))
        flags = ["-v", f"{conf}:/etc/pip.conf:ro"]
        for path in p.local_paths(settings):
            if Path(path).exists():
                flags += ["-v", f"{path}:{path}:ro"]
        return flags

    def resolve(self, b: p.Build, bases: dict[str, str | None],
                fetch: bool = True) -> tuple[list[str], str | None] | None:
        """The build arguments of ``b`` and the key of its inputs (None: no key can be made).

        None when it cannot be built here (the GPU engine where its base cannot be
        pulled), or, without ``fetch``, when its base is not here (nothing is pulled
        or built then).
        """
        dockerfile = (ROOT / b.dockerfile).read_text()
        build_args: dict[str, str] = {}
        if b.needs_gpu_base:
            base = p.dockerfile_arg(dockerfile, "VLLM_IMAGE") or ""
            if not self.tool.exists(base):
                if not fetch:
                    return None
                if self.tool.run("pull", "-q", p.qualified(base), check=False).returncode != 0:
                    self.say(f"{b.tag} skipped: its base {base} cannot be pulled here")
                    return None
        else:
            default = p.dockerfile_arg(dockerfile, "PYTHON_IMAGE") or ""
            if default not in bases:
                bases[default] = (self.python_base(default) if fetch
                                  else self.python_base_here(default))
            found = bases[default]
            if found is None:
                return None
            base = found
            build_args["PYTHON_IMAGE"] = base
        args = [a for k, v in build_args.items() for a in ("--build-arg", f"{k}={v}")]
        if b.target:
            args += ["--target", b.target]
        files = context_files(p.copy_sources(dockerfile))
        base_id = self.tool.image_id(base)
        if files is None or base_id is None:
            return args, None
        key = p.inputs_key(dockerfile=dockerfile, target=b.target, base=base_id,
                           build_args=build_args, files=files)
        return args, key

    def current(self, builds: Sequence[p.Build]) -> list[str]:
        """The tags of ``builds`` whose image is here and was built from the inputs there now.

        Pulls nothing and builds nothing, bases included.
        """
        bases: dict[str, str | None] = {}
        found: list[str] = []
        for b in builds:
            resolved = self.resolve(b, bases, fetch=False)
            if resolved is not None and self.up_to_date(b.tag, resolved[1]):
                found.append(b.tag)
        return found

    def up_to_date(self, tag: str, key: str | None) -> bool:
        """Whether image ``tag`` is here and labelled with ``key`` (None: no key, never)."""
        return key is not None and self.tool.label(tag, p.INPUTS_LABEL) == key

    def build(self, builds: Sequence[p.Build]) -> list[str]:
        """Build each image whose inputs changed since it was built; returns the tags ready.

        The GPU engine is skipped, in one line, where its base cannot be had.
        """
        if not builds:
            return []
        pip: list[str] | None = None
        bases: dict[str, str | None] = {}
        built: list[str] = []
        for b in builds:
            resolved = self.resolve(b, bases)
            if resolved is None:
                continue
            args, key = resolved
            if not self.no_cache and self.up_to_date(b.tag, key):
                self.say(f"{b.tag} is up to date (built from these inputs)")
                built.append(b.tag)
                continue
            if pip is None:
                pip = self.pip_flags()
            if key is not None:
                args += ["--label", f"{p.INPUTS_LABEL}={key}"]
            if self.no_cache:
                args.append("--no-cache")
            target = f" --target {b.target}" if b.target else ""
            self.say(f"building {b.tag} ({b.dockerfile}{target})")
            log = self.state / f"build-{b.component}{'-' + b.target if b.target else ''}.log"
            self.state.mkdir(parents=True, exist_ok=True)
            flags = [*self.tool.run_flags, *pip] if self.tool.name == "podman" else []
            with log.open("w") as out:
                done = subprocess.run(
                    [*self.tool.argv, "build", "--network", "host", *flags, *args, "-t", b.tag,
                     "-f", str(ROOT / b.dockerfile), str(ROOT)],
                    check=False, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
            if done.returncode != 0:
                tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
                raise ImageError(f"{b.tag} failed to build: {tail[0]} (full log: {log})")
            built.append(b.tag)
        return built


def build_images(only: Sequence[str] = (), say: Say = print) -> list[str]:
    """Build the brix images the manifests of ``k8s/`` name (``only`` these components)."""
    builds = manifest_builds(only)  # bad input first, before looking for an engine
    return Builder(find_tool(), say).build(builds)


def current_images(only: Sequence[str] = ()) -> list[str]:
    """The brix images (``only`` these components) that are here and current; builds nothing."""
    builds = manifest_builds(only)
    return Builder(find_tool(), say=lambda _line: None).current(builds)
