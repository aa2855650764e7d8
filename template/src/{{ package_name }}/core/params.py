from typing import Annotated, Any

from fastapi import Query

from .models import MAX_ID

Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="How many rows to skip")]
Limit = Annotated[int, Query(ge=1, le=100, description="How many rows to return")]

# The `responses=` of a route: extra statuses documented in the OpenAPI schema.
Responses = dict[int | str, dict[str, Any]]

SIGNED_IN: Responses = {
    401: {"description": "Missing, invalid or expired token"},
    403: {"description": "Inactive user, or not allowed"},
}
