"""Errors the HTTP API returns, in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every failure a client can cause is raised as an :class:`APIError` carrying its HTTP status, so route
code never builds error responses by hand and clients see the same shape for every status.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error with an HTTP status, rendered as OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unauthorized(message: str = "Missing or invalid API key: send 'Authorization: Bearer <key>'.") -> APIError:
    return APIError(
        401,
        message,
        type="authentication_error",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def not_found(message: str, *, param: str | None = None, code: str | None = "not_found") -> APIError:
    return APIError(404, message, type="not_found_error", param=param, code=code)


def too_large(message: str) -> APIError:
    return APIError(413, message, code="request_too_large")


def too_many_requests(message: str) -> APIError:
    # Clients (the openai SDK included) back off and retry on 429; Retry-After tells them how soon.
    return APIError(429, message, type="rate_limit_error", code="rate_limit_exceeded", headers={"Retry-After": "1"})


def unavailable(message: str, *, code: str = "model_loading") -> APIError:
    return APIError(503, message, type="service_unavailable_error", code=code, headers={"Retry-After": "5"})


def timeout(message: str) -> APIError:
    return APIError(504, message, type="timeout_error", code="request_timeout")


def internal(message: str = "Internal server error; the request was not completed.") -> APIError:
    return APIError(500, message, type="server_error", code="internal_error")
