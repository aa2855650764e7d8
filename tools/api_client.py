"""Use a client that openapi-python-client generated from a served project's /openapi.json.

    python tools/api_client.py CLIENT_DIR BASE_URL

CLIENT_DIR holds the generated package `client` (`--meta none`). Needs SUPERUSER_USERNAME and
SUPERUSER_PASSWORD in the environment. Exits non-zero, saying what failed, when the client's
names are unreadable or an error comes back without its typed `detail`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path

# One module per operation, named after its operation id: these names are what a user types.
EXPECTED_MODULES = [
    "client.api.health.health_live",
    "client.api.auth.auth_login_for_access_token",
    "client.api.users.users_read_me",
    "client.api.users.users_read_user",
]


def sign_in(base_url: str) -> str:
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "username": os.environ["SUPERUSER_USERNAME"],
            "password": os.environ["SUPERUSER_PASSWORD"],
        }
    ).encode()
    with urllib.request.urlopen(f"{base_url}/api/v1/auth/token", data=form, timeout=10) as reply:
        return str(json.load(reply)["access_token"])


def main(client_dir: str, base_url: str) -> None:
    sys.path.insert(0, client_dir)
    generated = sorted(
        p.stem for p in Path(client_dir, "client", "api").rglob("*.py") if p.stem != "__init__"
    )
    for name in EXPECTED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.exit(f"no module {name}; the client has: {generated}")
    import client
    import client.models
    from client.api.users import users_read_me, users_read_user
    from client.models import ErrorMessage, UserPublic

    # The token form is one schema, so one model (not TokenRequestType0, TokenRequestType1).
    split = sorted(name for name in dir(client.models) if name.startswith("TokenRequestType"))
    if split or not hasattr(client.models, "TokenRequest"):
        sys.exit(f"the token form should be one model, TokenRequest; the client has {split}")

    anonymous = client.Client(base_url=base_url)
    refused = users_read_me.sync(client=anonymous)
    if not isinstance(refused, ErrorMessage) or not refused.detail:
        sys.exit(f"GET /users/me without a token: expected an ErrorMessage, got {refused!r}")
    print(f"users_read_me, signed out: ErrorMessage(detail={refused.detail!r})")

    signed_in = client.AuthenticatedClient(base_url=base_url, token=sign_in(base_url))
    me = users_read_me.sync(client=signed_in)
    if not isinstance(me, UserPublic) or me.username != os.environ["SUPERUSER_USERNAME"]:
        sys.exit(f"GET /users/me: expected the superuser's UserPublic, got {me!r}")
    print(f"users_read_me, signed in: UserPublic(username={me.username!r})")

    missing = users_read_user.sync(client=signed_in, user_id=2_000_000_000)
    if not isinstance(missing, ErrorMessage) or not missing.detail:
        sys.exit(f"GET /users/<missing>: expected an ErrorMessage, got {missing!r}")
    print(f"users_read_user, missing: ErrorMessage(detail={missing.detail!r})")
    print(f"client ok: {len(generated)} modules, e.g. {', '.join(generated[:4])}")


if __name__ == "__main__":
    main(*sys.argv[1:])
