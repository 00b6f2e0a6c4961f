"""Who sends a request: bearer tokens, and impersonation headers. No I/O but the key file.

Two kinds of token:

- the admin token, written into localkube's kubeconfig: user ``kubernetes-admin``
  in ``system:masters`` (cluster-admin), as the kubeconfig of a kubeadm cluster;
- ServiceAccount tokens, issued through ``serviceaccounts/<name>/token`` (a
  ``TokenRequest``, as the kubelet and ``kubectl create token`` ask for them):
  ``lk-sa.<payload>.<signature>``, an HMAC-SHA256 over (namespace, name, uid of
  the ServiceAccount) with a 256-bit key. Not a JWT, but unguessable; valid while
  the ServiceAccount of that uid exists (deleting it revokes its tokens). It
  authenticates as ``system:serviceaccount:NS:NAME`` in the groups
  ``system:serviceaccounts``, ``system:serviceaccounts:NS`` and
  ``system:authenticated``.

The key and the admin token live in ``STATE_DIR/auth.json`` (mode 0600), so that
tokens stay valid across restarts of a persisted localkube.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from localkube.api.rbac import AUTHENTICATED, MASTERS, UserInfo, service_account_user

ADMIN = UserInfo(name="kubernetes-admin", groups=(MASTERS, AUTHENTICATED))
SA_TOKEN_PREFIX = "lk-sa."  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class Keys:
    signing_key: bytes
    admin_token: str

    @classmethod
    def generate(cls) -> Keys:
        return cls(signing_key=secrets.token_bytes(32), admin_token=secrets.token_urlsafe(32))

    @classmethod
    def load_or_create(cls, path: Path) -> Keys:
        """The keys in ``path``, or new ones written there (mode 0600)."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(signing_key=base64.b64decode(doc["signingKey"]),
                       admin_token=str(doc["adminToken"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        keys = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"signingKey": base64.b64encode(keys.signing_key).decode(),
                       "adminToken": keys.admin_token}, f)
        tmp.replace(path)
        return keys


class Authenticator:
    """Tokens to users. ``find_sa(namespace, name)`` gives a ServiceAccount's uid, or None
    when it does not exist."""

    def __init__(self, keys: Keys, find_sa: Callable[[str, str], str | None]) -> None:
        self.keys = keys
        self._find_sa = find_sa

    def issue(self, namespace: str, name: str, uid: str) -> str:
        """A token for the ServiceAccount ``namespace/name`` of ``uid``."""
        payload = json.dumps([namespace, name, uid], separators=(",", ":")).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{SA_TOKEN_PREFIX}{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return hmac.new(self.keys.signing_key, body.encode(), hashlib.sha256).hexdigest()

    def user_of(self, token: str) -> UserInfo | None:
        """The user ``token`` authenticates, or None when it authenticates no one."""
        if hmac.compare_digest(token.encode(), self.keys.admin_token.encode()):
            return ADMIN
        if not token.startswith(SA_TOKEN_PREFIX):
            return None
        body, _, sig = token[len(SA_TOKEN_PREFIX):].rpartition(".")
        if not body or not hmac.compare_digest(sig.encode(), self._sign(body).encode()):
            return None
        try:
            padded = body + "=" * (-len(body) % 4)
            namespace, name, uid = json.loads(base64.urlsafe_b64decode(padded))
        except (ValueError, TypeError):
            return None
        if self._find_sa(str(namespace), str(name)) != uid:
            return None  # the ServiceAccount is gone (or another of that name)
        return service_account_user(str(namespace), str(name), str(uid))

    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None:
        """The user of a request's ``Authorization: Bearer`` header (None: no valid token)."""
        auth = headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.user_of(token.strip())


def impersonated(headers: Mapping[str, str], getall: Callable[[str], list[str]]
                 ) -> UserInfo | None:
    """The user of ``Impersonate-User``/``Impersonate-Group`` headers (None: none asked).

    A ServiceAccount's user gets its groups as if it had authenticated; every
    impersonated user is in ``system:authenticated``.
    """
    name = headers.get("Impersonate-User")
    if not name:
        return None
    from localkube.api.rbac import service_account_of

    groups = list(getall("Impersonate-Group"))
    sa = service_account_of(name)
    if sa is not None and not groups:
        groups = list(service_account_user(*sa).groups)
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(name=name, groups=tuple(groups))
