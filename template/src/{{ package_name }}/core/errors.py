import logging
import re

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import UniqueConstraint
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import SQLModel

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A failure the client caused or may act on; carries its HTTP status."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND


class ConflictError(ServiceError):
    status_code = status.HTTP_409_CONFLICT


class ForbiddenError(ServiceError):
    status_code = status.HTTP_403_FORBIDDEN


# SQLite names the column: "UNIQUE constraint failed: users.email".
_SQLITE_UNIQUE_COLUMN = re.compile(r"UNIQUE constraint failed: \w+\.(\w+)")


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
    return JSONResponse({"detail": error.detail}, status_code=error.status_code)


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
    # FastAPI would echo each invalid value back as "input": a rejected password too.
    problems = [{k: v for k, v in problem.items() if k != "input"} for problem in error.errors()]
    return JSONResponse(
        {"detail": jsonable_encoder(problems)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


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
    # PoolTimeoutError: no pooled connection came free within DATABASE_POOL_TIMEOUT.
    for error_type in (DBAPIError, OSError, TimeoutError, PoolTimeoutError):
        app.add_exception_handler(error_type, _database_error)
