"""Headers on every response that tell browsers what not to do with it.

No guessing a content type other than the one sent (nosniff), and no showing it in a frame of
another site (clickjacking: X-Frame-Options for older browsers, CSP frame-ancestors for the
rest). A constant and a pure ASGI layer, cheap enough for every response: fold them into
another layer freely.
"""

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_security_headers(app: FastAPI) -> None:
    """SecurityHeaders around every other layer, Starlette's error middleware (500s) too."""
    build_stack = app.build_middleware_stack

    def build_stack_with_headers() -> ASGIApp:
        return SecurityHeaders(build_stack())

    app.build_middleware_stack = build_stack_with_headers  # type: ignore[method-assign]
