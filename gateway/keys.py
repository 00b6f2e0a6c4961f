"""API keys: from settings, and from a file that is read again when it changes.

A Kubernetes Secret mounted as a volume is updated in place (its files are
swapped behind a symlink), so keys can be rotated without a restart: the
file's identity (inode, size, mtime) is checked at most every ``check_every``
seconds, and a changed file is read again. A file that cannot be read keeps
the keys read last (and says so in the log). Keys configured at all, even
an empty file, means every ``/v1`` request needs one: it fails closed.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


def read_keys_file(path: str) -> set[str]:
    """Keys in ``path``: one a line; blank lines and ``#`` comments skipped."""
    keys = set()
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if line and not line.startswith("#"):
                keys.add(line)
    return keys


class ApiKeys:
    """The keys accepted now."""

    def __init__(
        self,
        fixed: Iterable[str] = (),
        path: str | None = None,
        *,
        check_every: float = 2.0,
        clock: Callable[[], float] = time.monotonic,  # a fake clock for tests
    ) -> None:
        self._fixed = frozenset(k.encode() for k in fixed if k)
        self._path = path
        self._check_every = check_every
        self._clock = clock
        self._checked = clock()
        self._identity: tuple[int, int, int] | None = None
        self._keys = self._fixed
        if path is not None:
            self._identity = self._stat(path)
            self._keys = self._fixed | {k.encode() for k in read_keys_file(path)}

    @property
    def enabled(self) -> bool:
        return bool(self._fixed) or self._path is not None

    @staticmethod
    def _stat(path: str) -> tuple[int, int, int]:
        st = os.stat(path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> frozenset[bytes]:
        path = self._path
        if path is not None and self._clock() - self._checked >= self._check_every:
            self._checked = self._clock()
            try:
                identity = self._stat(path)
                if identity != self._identity:
                    self._keys = self._fixed | {k.encode() for k in read_keys_file(path)}
                    self._identity = identity
                    log.info("API keys read again from %s (%d keys)", path, len(self._keys))
            except OSError as exc:
                log.warning("cannot read API keys from %s (%s); keeping the last ones", path,
                            exc)
        return self._keys

    def allows(self, authorization: bytes | None) -> bool:
        """Does ``Authorization: Bearer <key>`` carry an accepted key? (constant time per key)"""
        if not self.enabled:
            return True
        if authorization is None:
            return False
        scheme, _, key = authorization.partition(b" ")
        key = key.strip()
        return scheme.lower() == b"bearer" and bool(key) and any(
            hmac.compare_digest(key, k) for k in self.current())
