"""Refuse what would cost too much before the application reads it, in one ASGI layer (one
piece, so that a request pays for one wrapper): bodies over a size limit (413), JSON objects of
too many members (422), sign-ins while password hashing is full (503).

FastAPI 0.165 can limit bodies itself (`FastAPI(max_body_size=…)`, Starlette's
RequestBodyLimitMiddleware), but it answers a declared Content-Length over the limit with a
text/plain 413 from outside the exception handlers, not the JSON `{"detail": …}` that every
other error has and that the API document promises. Hence this, until it does.
"""

import json

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import hashing


class _BodyTooLargeError(Exception):
    pass


class _TooManyMembersError(Exception):
    pass


_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_UNREAD_METHODS = frozenset({"GET", "HEAD"})


class RequestLimits:
    """The three refusals in one layer; a request without a body passes straight through.

    A body is limited by its declared Content-Length (refused unread when over
    `max_body_bytes`) or, sent in chunks, by counting it as it arrives. A request with
    neither header has no body (HTTP/1.1 frames it so), and nothing is wrapped.

    JSON objects of more than `max_members` members are refused (422): validation makes one
    error per unknown key, so a megabyte of them would cost a second of CPU on the event
    loop before its 422 (which lists only the first few anyway). Bodies small enough
    (`check_over_bytes`) to be cheap whatever they hold pass through unread.

    A POST to `sign_in_path` (the token route) gets 503 unread while the hashing queue is
    full. The route would refuse it too, but only after routing it and parsing its form:
    event-loop time for each, and under a flood of sign-ins every other request
    waits behind them. The queue is read at each request (`hashing.queue`), never kept.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        sign_in_path: str,
        max_members: int = 1000,
        check_over_bytes: int = 16384,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.sign_in_path = sign_in_path
        self.max_members = max_members
        self.check_over_bytes = check_over_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "POST" and scope["path"] == self.sign_in_path and hashing.queue.is_full():
            error = hashing.queue.busy_error()
            headers = {"Retry-After": str(error.retry_after)}
            await JSONResponse({"detail": error.detail}, 503, headers)(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == _CONTENT_LENGTH:
                declared = value
            elif name == _TRANSFER_ENCODING:
                chunked = True
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._refuse_too_large(send)
            return
        # A body sent in chunks is counted whatever length it also claims.
        if not chunked and (
            declared is None or method in _UNREAD_METHODS or int(declared) <= self.check_over_bytes
        ):
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, check_members=method not in _UNREAD_METHODS)

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, *, check_members: bool
    ) -> None:
        received = 0
        too_large = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # Whatever the application makes of a body cut short, the answer is 413.
            if too_large:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse_too_large(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            app_receive = counting_receive
            if check_members:
                messages = await self._read_body(counting_receive)
                if self._too_many_members(messages):
                    await self._refuse_too_many_members(send)
                    return

                async def replay() -> Message:
                    return messages.pop(0) if messages else await counting_receive()

                app_receive = replay
            await self.app(scope, app_receive, guarded_send)
        except _BodyTooLargeError:
            if not started:
                await self._refuse_too_large(send)

    @staticmethod
    async def _read_body(receive: Receive) -> list[Message]:
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return messages

    def _too_many_members(self, messages: list[Message]) -> bool:
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if len(body) <= self.check_over_bytes:
            return False  # cheap whatever it holds

        def check(pairs: list[tuple[str, object]]) -> dict[str, object]:
            if len(pairs) > self.max_members:
                raise _TooManyMembersError
            return dict(pairs)

        try:
            json.loads(body, object_pairs_hook=check)
        except _TooManyMembersError:
            return True
        except (ValueError, RecursionError):
            return False  # not JSON, or not parseable: the application says so as usual
        return False

    async def _refuse_too_large(self, send: Send) -> None:
        detail = f"The request body is larger than {self.max_body_bytes} bytes"
        # The rest of the body is never read: the connection cannot serve another request.
        await _send_json(send, 413, {"detail": detail}, close=True)

    async def _refuse_too_many_members(self, send: Send) -> None:
        problem = {
            "type": "too_many_members",
            "loc": ["body"],
            "msg": f"A JSON object in the body has more than {self.max_members} members",
        }
        await _send_json(send, 422, {"detail": [problem]})


async def _send_json(send: Send, status: int, content: object, *, close: bool = False) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
