"""Walk every route of the contract (../shared/API.md) over real HTTP.

    python tools/api_contract.py http://127.0.0.1:8000

The nox `generated` session runs it against uvicorn serving a freshly rendered project,
with SUPERUSER_USERNAME and SUPERUSER_PASSWORD naming the superuser that
`initial_data` created. Any deviation stops it with a message; it prints a summary line.

With email, SMTP_SINK_PORT names the port on 127.0.0.1 where the service sends its mails: the
walk serves SMTP there itself (aiosmtpd) and follows the mailed links, whose base must be
FRONTEND_URL. Without it, only what needs no mailbox is walked.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import secrets
import sys
import time
from email.message import EmailMessage
from typing import Any

import httpx

checks = 0


def expect(response: httpx.Response, status: int, what: str) -> Any:
    global checks
    checks += 1
    if response.status_code != status:
        sys.exit(
            f"FAILED {what}: {response.request.method} {response.request.url} answered "
            f"{response.status_code}, expected {status}: {response.text[:500]}"
        )
    if status >= 500:
        sys.exit(f"FAILED {what}: server error")
    if not response.headers.get("x-request-id"):
        sys.exit(f"FAILED {what}: no X-Request-ID header in the response")
    text = response.text
    if "hashed_password" in text or "$argon2" in text:
        sys.exit(f"FAILED {what}: password material in the response")
    return response.json() if text else None


class Mailbox:
    """An SMTP server on 127.0.0.1:SMTP_SINK_PORT, keeping what the service sends."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=port)
        self.controller.start()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def wait_for(self, recipient: str, subject: str, what: str) -> EmailMessage:
        """The first mail to `recipient` whose subject holds `subject`, within a minute."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["To"] == recipient and subject in str(message["Subject"]):
                    self.messages.remove(message)
                    return message
            time.sleep(0.1)
        sys.exit(f"FAILED {what}: no mail to {recipient} about {subject!r} within a minute")


def mailed_token(message: EmailMessage, path: str, what: str) -> str:
    body = message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    frontend = os.environ.get("FRONTEND_URL", "http://localhost:3000").rstrip("/")
    match = re.search(re.escape(f"{frontend}/{path}?token=") + r"([A-Za-z0-9_\-]+)", text)
    if match is None:
        sys.exit(f"FAILED {what}: no {frontend}/{path}?token=… link in the mail: {text[:300]}")
    if "@" in match[0]:
        sys.exit(f"FAILED {what}: the link carries an address")
    return match[1]


def walk_email(api: httpx.Client, tag: str, password: str) -> None:
    """The email routes: recovery, reset, verification, and their limits."""
    sink = os.environ.get("SMTP_SINK_PORT")
    mailbox = Mailbox(int(sink)) if sink else None
    dave = {"username": f"dave_{tag}", "email": f"dave_{tag}@example.com", "password": password}
    created = expect(api.post("/users", json=dave), 201, "sign up (email)")
    assert created["email_verified"] is False, created
    login = {"username": dave["username"], "password": password}
    dave_h = {"Authorization": f"Bearer {expect(api.post('/auth/token', data=login), 200, 'dave login')['access_token']}"}  # fmt: skip
    expect(api.post("/users/me/email-verification"), 401, "verification without a token")
    expect(api.post("/users/me/email-verification", headers=dave_h), 202, "ask for verification")
    for path in ("/auth/verify-email", "/auth/password-reset"):
        body = {"token": "made-up-" + tag} | ({"new_password": "x" * 12} if "reset" in path else {})
        expect(api.post(path, json=body), 400, f"{path} with an unknown token")
        expect(api.post(path, json=body | {"extra": 1}), 422, f"{path} with an unknown field")
    known = api.post("/auth/password-recovery", json={"email": dave["email"]},
                     headers={"Host": "evil.example"})  # fmt: skip
    unknown = api.post("/auth/password-recovery", json={"email": f"nobody_{tag}@example.com"})
    expect(known, 202, "recovery of a known address")
    expect(unknown, 202, "recovery of an unknown address")
    if known.text != unknown.text:
        sys.exit("FAILED recovery: the answer tells whether an account has the address")
    expect(api.post("/auth/password-recovery", json={"email": "not an address"}), 422,
           "recovery of a malformed address")  # fmt: skip
    if mailbox is not None:
        # The verification mailed at sign-up, and the one asked for: the latest works.
        mailbox.wait_for(dave["email"], "Verify", "sign-up verification")
        verification = mailbox.wait_for(dave["email"], "Verify", "asked-for verification")
        token = mailed_token(verification, "verify-email", "verification link")
        expect(api.post("/auth/verify-email", json={"token": token}), 204, "verify email")
        expect(api.post("/auth/verify-email", json={"token": token}), 400, "verify twice")
        me = expect(api.get("/users/me", headers=dave_h), 200, "me after verifying")
        assert me["email_verified"] is True, me
        recovery = mailbox.wait_for(dave["email"], "Reset", "recovery mail")
        token = mailed_token(recovery, "reset-password", "reset link (asked with a forged Host)")
        new_password = "a fresh long password"
        expect(api.post("/auth/password-reset", json={"token": token, "new_password": "short"}),
               422, "reset to a weak password")  # fmt: skip
        expect(api.post("/auth/password-reset", json={"token": token, "new_password": new_password}),
               204, "reset password")  # fmt: skip
        expect(api.post("/auth/password-reset", json={"token": token, "new_password": new_password}),
               400, "reset twice with one token")  # fmt: skip
        expect(api.get("/users/me", headers=dave_h), 401, "sessions end with a reset")
        expect(api.post("/auth/token", data=login), 401, "the old password after a reset")
        expect(api.post("/auth/token", data=login | {"password": new_password}), 200,
               "the new password after a reset")  # fmt: skip
        mailbox.wait_for(dave["email"], "password was changed", "notice of the reset")
        mailbox.controller.stop()
    # A few mails an hour per address, then 429 with Retry-After (for any address).
    target = {"email": f"flooded_{tag}@example.com"}
    for _ in range(20):
        response = api.post("/auth/password-recovery", json=target)
        if response.status_code == 429:
            if not response.headers.get("retry-after", "").isdigit():
                sys.exit("FAILED recovery limit: 429 without a Retry-After")
            expect(response, 429, "recovery past the hourly limit")
            break
        expect(response, 202, "recovery within the hourly limit")
    else:
        sys.exit("FAILED recovery limit: 20 recoveries of one address in a row were all 202")


def main(base_url: str) -> None:
    api = httpx.Client(base_url=f"{base_url}/api/v1", timeout=10)
    su_login = {"username": os.environ["SUPERUSER_USERNAME"],
                "password": os.environ["SUPERUSER_PASSWORD"]}  # fmt: skip
    has_items = "/api/v1/items" in api.get(f"{base_url}/openapi.json").json()["paths"]

    assert expect(api.get("/health/live"), 200, "liveness") == {"status": "ok"}
    expect(api.get("/health/ready"), 200, "readiness")

    # Sign-up and sign-in.
    tag = secrets.token_hex(3)
    password = "a good long password"
    alice = {"username": f"alice_{tag}", "email": f"Alice_{tag}@Example.com", "password": password}
    me = expect(api.post("/users", json=alice), 201, "sign up")
    assert me["email"] == alice["email"].lower(), me
    assert "password" not in me
    expect(api.post("/users", json=alice | {"username": f"other_{tag}"}), 409, "email taken")
    expect(api.post("/users", json=alice | {"email": f"x{tag}@example.com"}), 409, "name taken")
    expect(api.post("/users", json=alice | {"username": "no"}), 422, "short username")
    expect(api.post("/users", json=alice | {"nickname": "al"}), 422, "unknown field")
    expect(api.post("/users", json=alice | {"is_superuser": True}), 403, "sign-up as superuser")
    expect(api.post("/users", json=alice | {"username": f"ALICE_{tag}", "email": f"a2_{tag}@example.com"}),
           409, "name taken in another case")  # fmt: skip
    expect(api.post("/auth/token", data={"username": alice["username"], "password": "wrong!!!"}),
           401, "wrong password")  # fmt: skip
    expect(api.post("/auth/token", data={"username": "nobody_" + tag, "password": password}),
           401, "unknown user")  # fmt: skip
    token = expect(
        api.post("/auth/token", data={"username": alice["email"], "password": password}),
        200, "login by email",
    )  # fmt: skip
    assert token["token_type"] == "bearer"
    assert token["expires_in"] > 0 and token["refresh_token"], token
    expect(api.post("/auth/token", data={"username": alice["username"].upper(), "password": password}),
           200, "login by username in another case")  # fmt: skip
    user = {"Authorization": f"Bearer {token['access_token']}"}
    su_token = expect(api.post("/auth/token", data=su_login), 200, "superuser login")
    su = {"Authorization": f"Bearer {su_token['access_token']}"}

    # Me.
    response = api.get("/users/me")
    expect(response, 401, "me without token")
    assert response.headers.get("www-authenticate") == "Bearer"
    expect(api.get("/users/me", headers={"Authorization": "Bearer nonsense"}), 401, "bad token")
    assert expect(api.get("/users/me", headers=user), 200, "me")["id"] == me["id"]
    patched = expect(api.patch("/users/me", headers=user, json={"full_name": "Alice A."}),
                     200, "update me")  # fmt: skip
    assert patched["full_name"] == "Alice A."
    expect(api.patch("/users/me", headers=user, json={"is_superuser": True}), 422, "no escalation")
    expect(api.put("/users/me/password", headers=user,
                   json={"current_password": "wrong!!!", "new_password": "x" * 10}),
           400, "wrong current password")  # fmt: skip
    expect(api.put("/users/me/password", headers=user,
                   json={"current_password": password, "new_password": "short"}),
           422, "weak new password")  # fmt: skip
    other_login = expect(api.post("/auth/token", data={"username": alice["username"], "password": password}),
                         200, "second sign-in")  # fmt: skip
    other = {"Authorization": f"Bearer {other_login['access_token']}"}
    expect(api.put("/users/me/password", headers=user,
                   json={"current_password": password, "new_password": "another long one"}),
           204, "change password")  # fmt: skip
    expect(api.get("/users/me", headers=user), 200, "this session outlives the password change")
    expect(
        api.get("/users/me", headers=other), 401, "another session ends with the password change"
    )
    password = "another long one"

    # Sessions: refresh, reuse, listing, logout.
    def refresh(refresh_token: str) -> httpx.Response:
        return api.post(
            "/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    login = {"username": alice["username"], "password": password}
    first = expect(
        api.post("/auth/token", data=login, headers={"User-Agent": "contract"}), 200, "sign in"
    )
    second = expect(refresh(first["refresh_token"]), 200, "refresh")
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token"}, second
    renewed = {"Authorization": f"Bearer {second['access_token']}"}
    expect(api.get("/users/me", headers=renewed), 200, "refreshed access token")
    listing = expect(api.get("/users/me/sessions", headers=renewed), 200, "list sessions")
    current = [each for each in listing["data"] if each["current"]]
    assert len(current) == 1 and current[0]["user_agent"] == "contract", listing
    expect(refresh(first["refresh_token"]), 401, "spent refresh token")
    expect(api.get("/users/me", headers=renewed), 401, "session ended by a spent refresh token")
    expect(refresh(second["refresh_token"]), 401, "refresh in an ended session")
    expect(refresh("garbage"), 401, "unknown refresh token")
    third = expect(api.post("/auth/token", data=login), 200, "sign in again")
    fourth = expect(api.post("/auth/token", data=login), 200, "and again")
    third_h = {"Authorization": f"Bearer {third['access_token']}"}
    fourth_h = {"Authorization": f"Bearer {fourth['access_token']}"}
    fourth_sessions = expect(api.get("/users/me/sessions", headers=fourth_h), 200, "list sessions")
    fourth_id = next(each["id"] for each in fourth_sessions["data"] if each["current"])
    expect(api.delete(f"/users/me/sessions/{fourth_id}", headers=third_h), 204, "end a session")
    expect(api.get("/users/me", headers=fourth_h), 401, "token of an ended session")
    expect(api.delete(f"/users/me/sessions/{fourth_id}", headers=third_h), 404, "end it again")
    expect(api.post("/auth/logout", headers=third_h), 204, "logout")
    expect(api.get("/users/me", headers=third_h), 401, "token after logout")
    expect(refresh(third["refresh_token"]), 401, "refresh after logout")
    expect(api.post("/auth/logout"), 401, "logout without a token")
    fifth = expect(api.post("/auth/token", data=login), 200, "sign in once more")
    fifth_h = {"Authorization": f"Bearer {fifth['access_token']}"}
    expect(api.delete("/users/me/sessions", headers=fifth_h), 204, "end all sessions")
    expect(api.get("/users/me", headers=fifth_h), 401, "token after ending all sessions")
    expect(api.get("/users/me", headers=user), 401, "every session ended")
    token = expect(api.post("/auth/token", data=login), 200, "sign in after all that")
    user = {"Authorization": f"Bearer {token['access_token']}"}

    # Administration.
    listing = expect(api.get("/users?limit=1", headers=su), 200, "list users")
    assert listing["count"] >= 2 and len(listing["data"]) == 1, listing
    expect(api.get("/users", headers=user), 403, "list users as a user")
    expect(api.get("/users?limit=101", headers=su), 422, "limit too large")
    expect(api.get("/users?offset=-1", headers=su), 422, "negative offset")
    expect(api.get(f"/users/{me['id']}", headers=user), 200, "read self")
    expect(api.get(f"/users/{me['id']}", headers=su), 200, "read user as superuser")
    expect(api.get("/users/2147483647", headers=su), 404, "missing user")
    expect(api.get("/users/abc", headers=su), 422, "malformed id")
    bob = expect(api.post("/users", json={"username": f"bob_{tag}", "email": f"bob_{tag}@example.com",
                                          "password": password}), 201, "sign up bob")  # fmt: skip
    expect(api.get(f"/users/{bob['id']}", headers=user), 403, "read another user")
    expect(api.patch(f"/users/{bob['id']}", headers=user, json={"full_name": "x"}), 403,
           "admin update as a user")  # fmt: skip
    expect(api.patch(f"/users/{bob['id']}", headers=su, json={"username": alice["username"]}), 409,
           "admin update to a taken name")  # fmt: skip
    bob_token = expect(api.post("/auth/token", data={"username": bob["username"], "password": password}),
                       200, "bob login")  # fmt: skip
    promoted = expect(api.patch(f"/users/{bob['id']}", headers=su,
                                json={"is_active": False, "full_name": "Bob"}), 200, "admin update")  # fmt: skip
    assert promoted["is_active"] is False
    expect(api.get("/users/me", headers={"Authorization": f"Bearer {bob_token['access_token']}"}),
           401, "deactivation ends sessions")  # fmt: skip
    expect(api.post("/auth/token", data={"username": bob["username"], "password": password}),
           403, "inactive user login")  # fmt: skip

    # Superusers: there is always an active one; a superuser creates any account.
    su_me = expect(api.get("/users/me", headers=su), 200, "superuser me")
    others = [u for u in expect(api.get("/users?limit=100", headers=su), 200, "list users")["data"]
              if u["is_superuser"] and u["is_active"] and u["id"] != su_me["id"]]  # fmt: skip
    if not others:
        for change in ({"is_superuser": False}, {"is_active": False}):
            refused = expect(api.patch(f"/users/{su_me['id']}", headers=su, json=change), 409,
                             "last active superuser")  # fmt: skip
            assert "superuser" in refused["detail"], refused
        expect(api.delete("/users/me", headers=su), 409, "delete the last active superuser")
    deputy = expect(api.post("/users", headers=su, json={"username": f"deputy_{tag}", "email": f"deputy_{tag}@example.com",
                                                         "password": password, "is_superuser": True}),
                    201, "superuser creates a superuser")  # fmt: skip
    assert deputy["is_superuser"] is True, deputy
    expect(api.delete(f"/users/{deputy['id']}", headers=su), 204, "delete the deputy")

    # Email.
    if "/api/v1/auth/password-recovery" in api.get(f"{base_url}/openapi.json").json()["paths"]:
        walk_email(api, tag, password)

    # Items.
    if has_items:
        item = expect(api.post("/items", headers=user, json={"title": "Lamp"}), 201, "create item")
        assert item["owner_id"] == me["id"], item
        expect(api.post("/items", json={"title": "Lamp"}), 401, "create item without token")
        expect(api.post("/items", headers=user, json={"title": ""}), 422, "empty title")
        expect(api.post("/items", headers=user, json={"title": "x", "description": "d" * 4001}),
               422, "long description")  # fmt: skip
        mine = expect(api.get("/items", headers=user), 200, "list own items")
        assert mine["count"] == 1 and mine["data"][0]["id"] == item["id"], mine
        assert expect(api.get("/items", headers=su), 200, "list all items")["count"] >= 1
        url = f"/items/{item['id']}"
        expect(api.get(url, headers=user), 200, "read item")
        expect(api.patch(url, headers=user, json={"title": "Desk lamp"}), 200, "update item")
        carol = {
            "username": f"carol_{tag}",
            "email": f"carol_{tag}@example.com",
            "password": password,
        }
        expect(api.post("/users", json=carol), 201, "sign up carol")
        carol_token = expect(api.post("/auth/token", data={"username": carol["username"], "password": password}),
                             200, "carol login")  # fmt: skip
        carol_h = {"Authorization": f"Bearer {carol_token['access_token']}"}
        expect(api.get(url, headers=carol_h), 404, "someone else's item")
        expect(api.delete(url, headers=carol_h), 404, "delete someone else's item")
        expect(api.get(url, headers=su), 200, "superuser reads any item")
        second = expect(
            api.post("/items", headers=user, json={"title": "Chair"}), 201, "create item"
        )
        expect(api.delete(url, headers=user), 204, "delete item")
        expect(api.get(url, headers=user), 404, "deleted item")

    # Deleting accounts (their items go too).
    expect(api.delete(f"/users/{bob['id']}", headers=user), 403, "delete user as a user")
    expect(api.delete(f"/users/{bob['id']}", headers=su), 204, "delete user")
    expect(api.delete(f"/users/{bob['id']}", headers=su), 404, "delete missing user")
    expect(api.delete("/users/me", headers=user), 204, "delete me")
    expect(api.get("/users/me", headers=user), 401, "token of a deleted user")
    if has_items:
        expect(api.get(f"/items/{second['id']}", headers=su), 404, "items deleted with the owner")
    print(f"api_contract: {checks} passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"))
