"""The API document (/openapi.json) and its pages (/docs, /redoc): what tools see of the API.

Operation ids read `<tag>-<function>` (`users-read_me`), so that generated clients get
readable names. Every documented error status gets the body that the service sends,
`{"detail": "…"}`, so that a typed client keeps the message; operations that need no token
say so (`security: []`). The pages' scripts and styles come from the fastapi-offline
package, served by the service itself: /docs works with no internet.
"""

from collections.abc import Callable
from contextlib import suppress
from functools import cache
from importlib.metadata import PackageNotFoundError, metadata, packages_distributions
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from sqlmodel import SQLModel

ERROR_SCHEMA = "ErrorMessage"
# In a route's openapi_extra: a token is optional there (anonymous, or signed in for more).
TOKEN_OPTIONAL = "x-token-optional"  # noqa: S105 (no password)

GUIDE = """
Sign in with `POST /api/v1/auth/token` (here: the **Authorize** button), then send the access
token as `Authorization: Bearer <token>`. Errors are JSON: `{"detail": "<what went wrong>"}`,
or for 422 a list of what was invalid.
"""


class ErrorMessage(SQLModel):
    detail: str


def operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


@cache
def _summary() -> str:
    # The project's one-line description, from its package metadata (pyproject.toml). Read
    # once: finding the distribution walks every installed package.
    package = __name__.partition(".")[0]
    for name in (package, *packages_distributions().get(package, [])):
        with suppress(PackageNotFoundError):
            return str(metadata(name)["Summary"] or "")
    return ""


def create_documented_app(*, docs: bool = True, **options: Any) -> FastAPI:
    """FastAPI(**options), with the document and pages described above, or none of them."""
    if not docs:
        return FastAPI(openapi_url=None, docs_url=None, redoc_url=None, **options)
    app = FastAPIOffline(
        description=f"{_summary()}\n{GUIDE}".strip(),
        generate_unique_id_function=operation_id,
        # Swagger UI would show a badge from an online validator.
        swagger_ui_parameters={"validatorUrl": None},
        **options,
    )
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _describe_errors_and_security(build())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _describe_errors_and_security(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = ErrorMessage.model_json_schema()
    error_body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if str(status)[0] in "45" and "content" not in response:
                    response["content"] = error_body
            # No token needed: say so, rather than leave tools to guess.
            operation.setdefault("security", [])
            if operation.pop(TOKEN_OPTIONAL, False):
                # {} is "no token": either will do.
                operation["security"] = [{}, *operation["security"]]
