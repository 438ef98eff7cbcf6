"""The account web API's OpenAPI 3.1 description (served at /openapi.json) and
a plain page of it (/docs: no script, nothing fetched from elsewhere)."""

from __future__ import annotations

import html
from typing import Any

from serverlink.web.rules import NAME_UNITS, PASSWORD_MAX, PASSWORD_MIN

#: Every error ``code`` the API answers, by HTTP status.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: (
        "invalid_json",
        "invalid_request",
        "invalid_userid",
        "invalid_nickname",
        "invalid_password",
        "bad_request",
    ),
    401: ("wrong_credentials", "invalid_session"),
    404: ("not_found",),
    405: ("method_not_allowed",),
    409: ("userid_taken",),
    413: ("body_too_large",),
    429: ("rate_limited",),
    500: ("internal_error",),
    503: ("unavailable", "busy"),
}


def _error(status: int, description: str) -> dict[str, Any]:
    return {
        "description": f"{description} (code: {', '.join(ERROR_CODES[status])})",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


_USERID = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_UNITS,
    "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
}
_PASSWORD = {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX}
_KEY = {"type": "string", "minLength": 64, "maxLength": 64}
_LIMITED = {
    "description": "Too many requests from this address or for this userid (code: "
    "rate_limited); the Retry-After header says when to try again",
    "content": _json("Error"),
}


def _operation(
    summary: str,
    body: str,
    ok: tuple[str, str, str | None],
    errors: dict[int, str],
    limited: bool = True,
) -> dict[str, Any]:
    """One operation: its body schema, its success (status, description, schema),
    its own errors, and those every body-reading operation shares."""
    status, description, schema = ok
    success: dict[str, Any] = {"description": description}
    if schema is not None:
        success["content"] = _json(schema)
    responses = {status: success}
    responses.update({str(code): _error(code, text) for code, text in errors.items()})
    responses["413"] = _error(413, "The body is too large")
    if limited:
        responses["429"] = _LIMITED
    responses["503"] = _error(503, "The account database does not answer, or too busy")
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": _json(body)},
        "responses": responses,
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "serverlink account API",
        "version": "1",
        "description": "Sign up, sign in for a session key to give the login server, sign out.",
    },
    "paths": {
        "/v1/accounts": {
            "post": _operation(
                "Sign up: a new account",
                "SignUp",
                ("201", "Created", "Account"),
                {
                    400: "A field breaks its rule, or the body is no JSON object",
                    409: "The userid is taken",
                },
            )
        },
        "/v1/sessions": {
            "post": _operation(
                "Sign in: a fresh session key (replacing the account's earlier one)",
                "SignIn",
                ("200", "Signed in", "Session"),
                {
                    400: "The body is no JSON object with the fields",
                    401: "Wrong userid or password (one answer for both)",
                },
            ),
            "delete": _operation(
                "Sign out: the session key no longer works",
                "SessionKey",
                ("204", "The key is revoked", None),
                {
                    400: "The body is no JSON object with the fields",
                    401: "Not the account's current key",
                },
                limited=False,
            ),
        },
    },
    "components": {
        "schemas": {
            "SignUp": {
                "type": "object",
                "required": ["userid", "password", "nickname"],
                "properties": {
                    "userid": _USERID,
                    "password": _PASSWORD,
                    "nickname": {
                        "type": "string",
                        "description": f"1 to {NAME_UNITS} UTF-16 code units: letters, digits, "
                        "'_', '-' and inner spaces",
                    },
                },
            },
            "SignIn": {
                "type": "object",
                "required": ["userid", "password"],
                "properties": {"userid": {"type": "string"}, "password": {"type": "string"}},
            },
            "Account": {
                "type": "object",
                "properties": {"accountno": {"type": "integer"}},
            },
            "Session": {
                "type": "object",
                "properties": {
                    "accountno": {"type": "integer"},
                    "sessionkey": {**_KEY, "description": "Valid once, until its time-to-live"},
                    "login_server": {"type": "string", "description": "host:port"},
                    "expires_in": {"type": "number", "description": "seconds"},
                },
            },
            "SessionKey": {
                "type": "object",
                "required": ["accountno", "sessionkey"],
                "properties": {"accountno": {"type": "integer"}, "sessionkey": _KEY},
            },
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    }
                },
            },
        }
    },
}


def docs_page() -> str:
    """/docs: each operation, its request and its answers, from ``OPENAPI``."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(OPENAPI['info']['title'])}</title></head><body>",
        f"<h1>{esc(OPENAPI['info']['title'])}</h1><p>{esc(OPENAPI['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    for path, operations in OPENAPI["paths"].items():
        for method, op in operations.items():
            parts.append(f"<h2>{method.upper()} {esc(path)}</h2><p>{esc(op['summary'])}</p>")
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            parts.append(f"<p>Body: {esc(ref.rsplit('/', 1)[1])}</p><ul>")
            for status, answer in op["responses"].items():
                parts.append(f"<li><b>{status}</b> {esc(answer['description'])}</li>")
            parts.append("</ul>")
    return "".join(parts) + "</body></html>"
