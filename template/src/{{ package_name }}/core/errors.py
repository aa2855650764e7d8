"""The error vocabulary: ServiceError and its kinds, each carrying its status, detail and
OpenAPI description, and responses(), which documents on a route the errors it can raise.

Raise these from services and dependencies; touch this file to add a kind of error every
domain shares (a domain's own errors subclass these in its package). How each error, and
every other failure, becomes a response is core/error_handlers.py's.
"""

from typing import Any, ClassVar

from fastapi import status

# The `responses=` of a route: extra statuses documented in the OpenAPI schema.
Responses = dict[int | str, dict[str, Any]]


class ServiceError(Exception):
    """A failure the client caused or may act on: its HTTP status, detail and OpenAPI description.

    Raised from services and dependencies alike; a route documents what it can raise with
    responses(ErrorA, ErrorB, …), so the API document says what the code does.
    """

    status_code = status.HTTP_400_BAD_REQUEST
    description = "Bad request"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        detail = self.description if detail is None else detail
        super().__init__(detail)
        self.detail = detail
        # Seconds, sent as Retry-After: when asking again may succeed.
        self.retry_after = retry_after

    @classmethod
    def described(cls, description: str) -> "type[ServiceError]":
        """This error as one route words it in the API document (same status and body)."""
        return type(cls.__name__, (cls,), {"description": description})


class UnauthorizedError(ServiceError):
    status_code = status.HTTP_401_UNAUTHORIZED
    description = "Invalid token"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ServiceError):
    status_code = status.HTTP_403_FORBIDDEN
    description = "Not allowed"


class NotFoundError(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND
    description = "Not found"


class ConflictError(ServiceError):
    status_code = status.HTTP_409_CONFLICT
    description = "Conflicts with current data"


class UniqueViolationError(ConflictError):
    """Raised by no code: the database refused a duplicate (core/error_handlers.py)."""

    description = "Already taken"


class TooManyRequestsError(ServiceError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    description = "Too many requests"


class BusyError(ServiceError):
    """The service is at capacity for this kind of request; the client may retry later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    description = "Busy; try again later"


def responses(*errors: type[ServiceError]) -> Responses:
    """The `responses=` of a route that can raise these errors.

    Errors of one status share an entry: "A, or b".
    """
    by_status: dict[int, list[str]] = {}
    for error in errors:
        descriptions = by_status.setdefault(error.status_code, [])
        if error.description not in descriptions:
            descriptions.append(error.description)
    return {
        code: {"description": ", or ".join([first, *(d[:1].lower() + d[1:] for d in rest)])}
        for code, (first, *rest) in by_status.items()
    }
