"""Kubernetes ``Status`` errors.

Every failure the API answers is an ``ApiError`` turned into a ``Status``
object with the HTTP code and the ``reason`` clients switch on::

    ApiError
    ├── 400 BadRequest
    ├── 404 NotFound
    ├── 405 MethodNotAllowed
    ├── 406 NotAcceptable
    ├── 409 AlreadyExists / Conflict
    ├── 410 Expired (watch from a compacted resourceVersion)
    ├── 415 UnsupportedMediaType
    └── 422 Invalid (with ``details.causes``)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Cause:
    """One reason an object is invalid (``details.causes[]``)."""

    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    message: str
    field: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass(kw_only=True)
class ApiError(Exception):
    """An error the API answers as a ``Status`` object."""

    code: int
    reason: str
    message: str
    name: str | None = None
    group: str | None = None
    kind: str | None = None
    causes: list[Cause] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group is not None:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


def status_success(*, name: str, group: str, kind: str, uid: str) -> dict[str, Any]:
    """The ``Status`` a delete answers once the object is gone."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": group, "kind": kind, "uid": uid},
    }


def bad_request(message: str) -> ApiError:
    return ApiError(code=400, reason="BadRequest", message=message)


def not_found(*, group: str, plural: str, name: str) -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(
        code=404, reason="NotFound", message=f'{qualified} "{name}" not found',
        name=name, group=group, kind=plural,
    )


def resource_not_found(what: str) -> ApiError:
    return ApiError(
        code=404, reason="NotFound",
        message=f"the server could not find the requested resource ({what})",
    )


def already_exists(*, group: str, plural: str, name: str) -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(
        code=409, reason="AlreadyExists", message=f'{qualified} "{name}" already exists',
        name=name, group=group, kind=plural,
    )


def conflict(*, group: str, plural: str, name: str, why: str) -> ApiError:
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(
        code=409, reason="Conflict",
        message=f'Operation cannot be fulfilled on {qualified} "{name}": {why}',
        name=name, group=group, kind=plural,
    )


def expired(message: str) -> ApiError:
    return ApiError(code=410, reason="Expired", message=message)


def method_not_allowed(method: str, what: str) -> ApiError:
    return ApiError(
        code=405, reason="MethodNotAllowed",
        message=f"the server does not allow this method on the requested resource "
        f"({method} {what})",
    )


def invalid(*, group: str, kind: str, name: str, causes: list[Cause]) -> ApiError:
    qualified = f"{kind}.{group}" if group else kind
    summary = ", ".join(
        f"{c.field}: {c.message}" if c.field else c.message for c in causes
    )
    return ApiError(
        code=422, reason="Invalid",
        message=f'{qualified} "{name}" is invalid: {summary}',
        name=name, group=group, kind=kind, causes=causes,
    )
