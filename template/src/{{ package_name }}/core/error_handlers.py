"""Every failure's response, in one place: ServiceError's own, duplicates (409), invalid input
(422), a method the path lacks (405), a database out of reach (503).

create_app calls add_exception_handlers once; touch this file to answer some other failure.
"""

import logging
import re

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import UniqueConstraint
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import SQLModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from .errors import ServiceError

logger = logging.getLogger(__name__)

# A 422 lists at most this many problems.
MAX_VALIDATION_ERRORS = 10

# SQLite names the column: "UNIQUE constraint failed: users.email", or the index of an
# expression: "UNIQUE constraint failed: index 'ix_users_username_lower'".
_SQLITE_UNIQUE_COLUMN = re.compile(r"UNIQUE constraint failed: \w+\.(\w+)")
_SQLITE_UNIQUE_INDEX = re.compile(r"UNIQUE constraint failed: index '(\w+)'")


def is_unique_violation(error: IntegrityError) -> bool:
    orig = error.orig
    return getattr(orig, "sqlstate", None) == "23505" or (
        getattr(orig, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_UNIQUE"
    )


def _column_of_unique_index(name: str) -> str | None:
    for table in SQLModel.metadata.tables.values():
        for index in table.indexes:
            if index.name == name:
                return next(iter(index.columns)).name
        for constraint in table.constraints:
            if constraint.name == name and isinstance(constraint, UniqueConstraint):
                return next(iter(constraint.columns)).name
    return None


def conflict_detail(error: IntegrityError) -> str:
    # PostgreSQL (asyncpg) names the index or constraint; SQLite names the column.
    constraint = getattr(getattr(error.orig, "__cause__", None), "constraint_name", None)
    if not isinstance(constraint, str) and (match := _SQLITE_UNIQUE_INDEX.search(str(error.orig))):
        constraint = match[1]
    column = _column_of_unique_index(constraint) if isinstance(constraint, str) else None
    if column is None and (match := _SQLITE_UNIQUE_COLUMN.search(str(error.orig))):
        column = match[1]
    if column is None:
        return "This conflicts with an existing record"
    return f"That {column} is already taken"


def _is_database_unavailable(error: Exception) -> bool:
    if isinstance(error, (OSError, TimeoutError, PoolTimeoutError)):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError))
    return False


async def _service_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServiceError)  # noqa: S101
    headers = dict(error.headers)
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(
        {"detail": error.detail}, status_code=error.status_code, headers=headers or None
    )


async def _integrity_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, IntegrityError)  # noqa: S101
    if is_unique_violation(error):
        return JSONResponse({"detail": conflict_detail(error)}, status_code=409)
    # A foreign key or check failure that validation did not catch: still the request's
    # fault, usually a race with a delete.
    logger.warning("integrity error: %s", type(error.orig).__name__)
    return JSONResponse({"detail": "The request conflicts with current data"}, status_code=409)


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)  # noqa: S101
    # FastAPI would echo each invalid value back as "input": a rejected password too. A body
    # of a hundred thousand unknown keys makes as many errors: the first few say enough.
    problems = [
        {k: v for k, v in problem.items() if k != "input"}
        for problem in error.errors()[:MAX_VALIDATION_ERRORS]
    ]
    return JSONResponse(
        {"detail": jsonable_encoder(problems)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)  # noqa: S101
    if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        # Starlette names only the methods of the first route that matched the path.
        allowed = _methods_for_path(request)
        if allowed:
            return JSONResponse(
                {"detail": error.detail}, status_code=405, headers={"Allow": ", ".join(allowed)}
            )
    if error.status_code == status.HTTP_400_BAD_REQUEST and error.detail == _UNPARSABLE:
        # A body that is not even text (not UTF-8) is invalid input like any other: 422.
        problem = {"type": "body_unparsable", "loc": ["body"], "msg": "Body is not valid JSON"}
        return JSONResponse({"detail": [problem]}, status_code=422)
    return await http_exception_handler(request, error)


_UNPARSABLE = "There was an error parsing the body"


def _methods_for_path(request: Request) -> list[str]:
    # Built once from the API schema: the methods documented for each path template.
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(
        request.app.state, "methods_by_path", None
    )
    if table is None:
        table = [
            (compile_path(path)[0], {method.upper() for method in operations})
            for path, operations in request.app.openapi()["paths"].items()
        ]
        request.app.state.methods_by_path = table
    path = request.url.path
    return sorted({method for regex, methods in table if regex.match(path) for method in methods})


async def _stale_data(_request: Request, _error: Exception) -> JSONResponse:
    # Another request deleted the row between this one reading and updating it.
    return JSONResponse({"detail": "Not found"}, status_code=status.HTTP_404_NOT_FOUND)


async def _database_error(_request: Request, error: Exception) -> JSONResponse:
    if not _is_database_unavailable(error):
        raise error
    logger.warning("database unavailable: %s", type(error).__name__)
    return JSONResponse(
        {"detail": "The database is unavailable; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(StaleDataError, _stale_data)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # PoolTimeoutError: no pooled connection came free within DATABASE_POOL_TIMEOUT.
    for error_type in (DBAPIError, OSError, TimeoutError, PoolTimeoutError):
        app.add_exception_handler(error_type, _database_error)
