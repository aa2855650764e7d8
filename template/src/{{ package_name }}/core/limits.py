"""Refuse what would cost too much before the application reads it: bodies over a size limit
(413), JSON objects of too many members (422), sign-ins while password hashing is full (503).

FastAPI 0.165 can limit bodies itself (`FastAPI(max_body_size=…)`, Starlette's
RequestBodyLimitMiddleware), but it answers a declared Content-Length over the limit with a
text/plain 413 from outside the exception handlers, not the JSON `{"detail": …}` that every
other error has and that the API document promises. Hence this, until it does.
"""

import json

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import security


class _BodyTooLargeError(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return

        received = 0
        too_large = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # Whatever the application makes of a body cut short, the answer is 413.
            if too_large:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLargeError:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"The request body is larger than {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooManyMembersError(Exception):
    pass


class JsonMemberLimit:
    """Refuse (422) a JSON body holding an object of more than max_members members.

    Validation makes one error per unknown key, so a megabyte of them would cost a second of
    CPU on the event loop before its 422 (which lists only the first few anyway). Bodies
    small enough to be cheap whatever they hold pass through unread.
    """

    def __init__(
        self, app: ASGIApp, max_members: int = 1000, check_over_bytes: int = 16384
    ) -> None:
        self.app = app
        self.max_members = max_members
        self.check_over_bytes = check_over_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._small_or_none(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if size > self.check_over_bytes and self._too_many_members(messages):
            await self._refuse(send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _small_or_none(self, scope: Scope) -> bool:
        if scope["method"] in ("GET", "HEAD"):
            return True
        for name, value in scope["headers"]:
            if name == b"content-length":
                return bool(value.isdigit() and int(value) <= self.check_over_bytes)
        return False  # sent in chunks, of a size yet unknown

    def _too_many_members(self, messages: list[Message]) -> bool:
        def check(pairs: list[tuple[str, object]]) -> dict[str, object]:
            if len(pairs) > self.max_members:
                raise _TooManyMembersError
            return dict(pairs)

        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        try:
            json.loads(body, object_pairs_hook=check)
        except _TooManyMembersError:
            return True
        except (ValueError, RecursionError):
            return False  # not JSON, or not parseable: the application says so as usual
        return False

    async def _refuse(self, send: Send) -> None:
        problem = {
            "type": "too_many_members",
            "loc": ["body"],
            "msg": f"A JSON object in the body has more than {self.max_members} members",
        }
        body = json.dumps({"detail": [problem]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 422,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ShedSignInsWhileHashingIsFull:
    """POST to `path` (the token route) gets 503 unread while the hashing queue is full.

    The route would refuse it too, but only after routing it and parsing its form: about 2 ms
    of the event loop each, and under a flood of sign-ins every other request waits behind
    them. Refused here, one costs a fraction of that. The queue is read at each request
    (`security.hashing`), never kept.
    """

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] == "POST"
            and security.hashing.is_full()
        ):
            error = security.hashing.busy_error()
            headers = {"Retry-After": str(error.retry_after)}
            await JSONResponse({"detail": error.detail}, 503, headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)
