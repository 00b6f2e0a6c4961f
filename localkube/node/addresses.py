"""Pod addresses: each pod gets its own loopback address 127.0.0.N (N >= 10).

Linux routes all of 127.0.0.0/8 to the loopback interface, so every pod can
bind its own address without any set-up. The lowest free address is handed
out and an address is reused once its pod is gone. After 127.0.0.254 the pool
goes on with 127.0.1.10 and so on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Final

FIRST_HOST: Final = 10
LAST_HOST: Final = 254


class AddressPool:
    def __init__(self) -> None:
        self._owner: dict[str, str] = {}  # address -> pod uid

    @staticmethod
    def _candidates() -> Iterator[str]:
        for third in range(256):
            for fourth in range(FIRST_HOST, LAST_HOST + 1):
                yield f"127.0.{third}.{fourth}"

    def acquire(self, owner: str, preferred: str | None = None) -> str:
        """An address for ``owner`` (its ``preferred`` one when that is free and valid)."""
        for addr, who in self._owner.items():
            if who == owner:
                return addr
        if preferred and preferred not in self._owner and self.valid(preferred):
            self._owner[preferred] = owner
            return preferred
        for addr in self._candidates():
            if addr not in self._owner:
                self._owner[addr] = owner
                return addr
        raise RuntimeError("no free pod address left in 127.0.0.0/16")

    def release(self, owner: str) -> None:
        for addr in [a for a, who in self._owner.items() if who == owner]:
            del self._owner[addr]

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
