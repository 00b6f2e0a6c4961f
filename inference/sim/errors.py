"""Errors the sim answers, in vLLM's shape of OpenAI's error body.

vLLM fills ``code`` with the HTTP status (an integer) and ``type`` with a class
name such as ``NotFoundError`` (``Bad Request`` for a body that fails
validation); brix's clients read ``message`` and the status.
"""

from __future__ import annotations

from typing import Any

from brix.openai_errors import error_body


class ApiError(Exception):
    """An error answered to the client with ``status`` and vLLM's body."""

    def __init__(
        self, status: int, message: str, *, type_: str = "BadRequestError",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param

    def body(self) -> dict[str, Any]:
        body = error_body(self.status, self.message, type_=self.type, param=self.param)
        body["error"]["code"] = self.status
        return body


def bad_request(message: str, *, param: str | None = None) -> ApiError:
    """A semantic error in an otherwise well-formed request (vLLM's BadRequestError)."""
    return ApiError(400, message, type_="BadRequestError", param=param)


def invalid_body(message: str, *, param: str | None = None) -> ApiError:
    """A body that is not JSON or misses/mistypes a field (vLLM's validation error)."""
    return ApiError(400, message, type_="Bad Request", param=param)


def not_found(message: str, *, param: str | None = None) -> ApiError:
    return ApiError(404, message, type_="NotFoundError", param=param)
