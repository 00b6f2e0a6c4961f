"""The one exception the API turns into an OpenAI-style error answer.

Every module of the sidecar raises ``ApiError`` for what a caller did wrong or what
went wrong downstream; ``api`` renders it with ``brix.openai_errors.error_body``.
"""

from __future__ import annotations

from typing import Any

from brix.openai_errors import error_body


class ApiError(Exception):
    """An answer with an HTTP error status: ``status``, a message, a stable ``code``."""

    def __init__(
        self, status: int, message: str, *, code: str, param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, param=self.param)
