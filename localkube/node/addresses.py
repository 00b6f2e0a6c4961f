"""Pod addresses: each pod gets its own loopback address 127.0.0.N (N >= 10).

Linux routes all of 127.0.0.0/8 to the loopback interface, so every pod can
bind its own address without any set-up. The lowest free address is handed
out and an address is reused once its pod is gone. After 127.0.0.254 the pool
goes on with 127.0.1.10 and so on.

Several localkubes may run on one machine (a developer's ``make up`` beside a
test's), so an address is also claimed machine-wide: the pool holds an
exclusive ``flock`` on ``<lock_dir>/<address>`` while one of its pods has it.
The kernel drops the lock when the file is closed or the process dies, even by
SIGKILL, so nothing stale is left to clean up. An address on which some socket
already listens (``/proc/net/tcp``: a process started some other way) is
skipped too.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

FIRST_HOST: Final = 10
LAST_HOST: Final = 254


def default_lock_dir() -> Path:
    """Shared by every localkube of this user on this machine."""
    return Path(tempfile.gettempdir()) / f"localkube-addresses-{os.getuid()}"


def listening_addresses(table: Path = Path("/proc/net/tcp")) -> set[str]:
    """IPv4 addresses with a listening TCP socket on this machine (empty if unknown)."""
    try:
        lines = table.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return set()
    out = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
            hex_ip = fields[1].split(":")[0]
            out.add(str(ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(hex_ip), "little"))))
    return out


class AddressPool:
    def __init__(self, lock_dir: Path | None = None, *,
                 listening: Callable[[], set[str]] = listening_addresses) -> None:
        self._lock_dir = lock_dir or default_lock_dir()
        self._listening = listening  # a seam for tests
        self._owner: dict[str, str] = {}  # address -> pod uid
        self._locks: dict[str, int] = {}  # address -> the locked file's descriptor

    @staticmethod
    def _candidates() -> Iterator[str]:
        for third in range(256):
            for fourth in range(FIRST_HOST, LAST_HOST + 1):
                yield f"127.0.{third}.{fourth}"

    def _claim(self, addr: str, listening: set[str]) -> bool:
        """Lock ``addr`` machine-wide; False when another process holds it or listens on it."""
        if addr in listening:
            return False
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_dir / addr, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._locks[addr] = fd
        return True

    def acquire(self, owner: str, preferred: str | None = None) -> str:
        """An address for ``owner`` (its ``preferred`` one when that is free and valid)."""
        for addr, who in self._owner.items():
            if who == owner:
                return addr
        listening = self._listening()
        if (preferred and preferred not in self._owner and self.valid(preferred)
                and self._claim(preferred, listening)):
            self._owner[preferred] = owner
            return preferred
        for addr in self._candidates():
            if addr not in self._owner and self._claim(addr, listening):
                self._owner[addr] = owner
                return addr
        raise RuntimeError("no free pod address left in 127.0.0.0/16")

    def release(self, owner: str) -> None:
        for addr in [a for a, who in self._owner.items() if who == owner]:
            del self._owner[addr]
            fd = self._locks.pop(addr, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def close(self) -> None:
        for owner in set(self._owner.values()):
            self.release(owner)

    @staticmethod
    def valid(addr: str) -> bool:
        try:
            ip = ipaddress.IPv4Address(addr)
        except ValueError:
            return False
        parts = addr.split(".")
        return (ip in ipaddress.IPv4Network("127.0.0.0/16")
                and FIRST_HOST <= int(parts[3]) <= LAST_HOST)

    def in_use(self) -> dict[str, str]:
        return dict(self._owner)
