from typing import Annotated

from fastapi import Query

from .models import MAX_ID

Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="How many rows to skip")]
Limit = Annotated[int, Query(ge=1, le=100, description="How many rows to return")]
