"""The pure decisions of ``make images``: which images, Dockerfiles, mirror, pip settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from brix.images import plan as p

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def test_the_manifests_name_each_component_image() -> None:
    texts = [f.read_text() for f in sorted((ROOT / "k8s").rglob("*.yaml"))]
    images = p.manifest_images(texts)
    builds = p.plan(images)
    by_tag = {b.tag: b for b in builds}
    # Every brix image the manifests name gets a build, from its own Dockerfile.
    assert {i for i in images if i.startswith("brix/")} == set(by_tag)
    for b in builds:
        assert (ROOT / b.dockerfile).is_file(), b
    assert {b.component for b in builds} == {"gateway", "sidecar", "controller", "engine"}
    # The slow engine comes last.
    assert builds[-1].component == "engine"


def test_containers_and_init_containers_are_read_other_images_are_not() -> None:
    text = """
kind: Deployment
spec:
  template:
    spec:
      initContainers: [{name: a, image: brix/sidecar:1}]
      containers: [{name: b, image: brix/gateway:2}, {name: c}]
---
kind: ConfigMap
data: {image: not/a-container:1}
"""
    assert p.manifest_images([text]) == {"brix/sidecar:1", "brix/gateway:2"}


@pytest.mark.parametrize(("image", "target"), [
    ("brix/engine:0.1.0-cpu", "cpu"), ("brix/engine:0.1.0", "gpu"), ("brix/gateway:0.1.0", None),
    ("localhost/brix/sidecar:3", None),
])
def test_engine_tags_choose_the_target(image: str, target: str | None) -> None:
    b = p.build_for(image)
    assert b.target == target
    assert b.needs_gpu_base == (target == "gpu")
    assert b.tag == image.removeprefix("localhost/")


@pytest.mark.parametrize("image", ["nginx:1", "brix/unknown:1", "brix/gateway", "brix/Gateway:1"])
def test_an_image_that_is_not_brix_is_refused(image: str) -> None:
    with pytest.raises(p.PlanError, match="not a brix image"):
        p.build_for(image)


def test_only_keeps_the_components_named_and_refuses_unknown_ones() -> None:
    images = {"brix/gateway:1", "brix/sidecar:1", "prom/prometheus:2"}
    assert [b.tag for b in p.plan(images, ["gateway"])] == ["brix/gateway:1"]
    with pytest.raises(p.PlanError, match=r"unknown component.*gatway"):
        p.plan(images, ["gatway"])


def test_dockerfile_arg_defaults() -> None:
    text = (ROOT / "docker/Dockerfile.engine").read_text()
    assert p.dockerfile_arg(text, "VLLM_IMAGE", ) is not None
    assert p.dockerfile_arg("ARG X=a:b\nARG Y\n", "X") == "a:b"
    assert p.dockerfile_arg("ARG X=a:b\nARG Y\n", "Y") is None


def test_apt_mirror_from_deb822_and_one_line_sources() -> None:
    deb822 = ("Types: deb\n# URIs: http://old.example/debian\nURIs: http://mirror.example/debian\n"
              "Suites: bookworm\n")
    security = "Types: deb\nURIs: http://mirror.example/debian-security\n"
    assert p.apt_mirror([security, deb822]) == "http://mirror.example/debian"
    assert p.apt_mirror(["deb [arch=amd64] http://m.example/debian bookworm main\n"]) == \
        "http://m.example/debian"
    with pytest.raises(p.PlanError, match="no Debian mirror"):
        p.apt_mirror([security, "# nothing\n"])


CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
global.cert='/elsewhere/ca.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'
global.find-links='/opt/wheels'
global.index-url='https://proxy.example/simple'
"""


def test_pip_settings_keep_what_a_build_needs_and_the_environment_wins() -> None:
    s = p.pip_settings(CONFIG_LIST)
    assert s == {"cert": "/etc/ssl/certs/ca-certificates.crt",
                 "constraint": "/etc/xdg/pip/constraints.txt",
                 "extra-index-url": "file:///opt/pypi/simple https://mirror.example/simple",
                 "find-links": "/opt/wheels", "index-url": "https://proxy.example/simple"}
    assert p.local_paths(s) == ["/etc/ssl/certs/ca-certificates.crt",
                                "/etc/xdg/pip/constraints.txt", "/opt/wheels", "/opt/pypi"]
    conf = p.pip_conf(s)
    assert conf.startswith("[global]\n")
    assert "index-url = https://proxy.example/simple\n" in conf
    assert "default-timeout" not in conf


def test_no_pip_settings_give_an_empty_config() -> None:
    assert p.pip_settings("") == {}
    assert p.pip_conf({}) == "[global]\n"
    assert p.local_paths({}) == []


@pytest.mark.parametrize(("short", "full"), [
    ("python:3.11", "docker.io/library/python:3.11"),
    ("vllm/vllm-openai:v1", "docker.io/vllm/vllm-openai:v1"),
    ("quay.io/x/y:1", "quay.io/x/y:1"),
    ("localhost/brix-base-python:3.11", "localhost/brix-base-python:3.11"),
    ("localhost:5000/a:1", "localhost:5000/a:1"),
])
def test_qualified_names(short: str, full: str) -> None:
    assert p.qualified(short) == full


def test_copy_sources_are_the_context_paths_of_copy_and_add_not_those_of_stages() -> None:
    dockerfile = """FROM base AS build
COPY pyproject.toml README.md ./
COPY --chown=1:1 brix \\
     ./brix
ADD ["inference", "/src/inference"]
COPY --from=build /opt/brix /opt/brix
copy brix/ ./again
"""
    assert p.copy_sources(dockerfile) == ["pyproject.toml", "README.md", "brix", "inference"]


def test_every_dockerfile_copies_pyproject_before_any_source_folder() -> None:
    # The dependency layer depends on pyproject.toml alone: the project's
    # folders are copied after it (see docker/).
    for dockerfile in sorted((ROOT / "docker").glob("Dockerfile.*")):
        sources = p.copy_sources(dockerfile.read_text())
        assert sources[:2] == ["pyproject.toml", "README.md"], dockerfile.name
        assert "brix" in sources, dockerfile.name


def _key(*, dockerfile: str = "FROM x\nCOPY brix ./brix\n", target: str | None = None,
         base: str = "sha256:1", build_args: dict[str, str] | None = None,
         files: dict[str, str] | None = None) -> str:
    return p.inputs_key(dockerfile=dockerfile, target=target, base=base,
                        build_args=build_args or {"PYTHON_IMAGE": "b:1"},
                        files=files or {"brix/a.py": "-d1", "brix/b.py": "-d2"})


def test_the_inputs_key_changes_with_each_input_and_only_then() -> None:
    key = _key()
    # The same inputs, in any order: the same key.
    assert _key(files={"brix/b.py": "-d2", "brix/a.py": "-d1"}) == key
    changed = [_key(dockerfile="FROM x\nCOPY brix ./src\n"), _key(target="cpu"),
               _key(base="sha256:2"), _key(build_args={"PYTHON_IMAGE": "b:2"}),
               _key(files={"brix/a.py": "-d1", "brix/b.py": "-d3"}),
               _key(files={"brix/a.py": "-d1", "brix/b.py": "x-d2"}),
               _key(files={"brix/a.py": "-d1", "brix/b.py": "-d2", "brix/c.py": "-d3"})]
    assert key not in changed
    assert len(set(changed)) == len(changed)
