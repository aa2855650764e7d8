"""The mails the service sends, each from a text and an HTML template in templates/.

Each function adds the mail (and the token its link carries) to the caller's transaction.
Restyle a mail by editing its two templates; `base.html` holds the shared layout.
"""

import logging
from datetime import timedelta
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core.config import get_settings
from . import limits
from .config import get_email_settings
from .outbox import enqueue
from .tokens import issue_token

logger = logging.getLogger(__name__)

templates = Environment(
    loader=PackageLoader(__package__ or __name__.rpartition(".")[0], "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

SUBJECTS = {
    "verify_email": "Verify your email address",
    "password_recovery": "Reset your password",
    "password_changed": "Your password was changed",
    "email_changed": "Your email address was changed",
}


def render(name: str, **context: object) -> tuple[str, str, str]:
    """Subject, text and HTML of the mail `name`."""
    project = get_settings().PROJECT_NAME
    context = {"project_name": project, **context}
    text = templates.get_template(f"{name}.txt").render(context)
    html = templates.get_template(f"{name}.html").render(context)
    return f"{project}: {SUBJECTS[name]}", text, html


def link(path: str, token: str) -> str:
    # From FRONTEND_URL, never from the request: a forged Host header cannot aim links
    # elsewhere. The token alone identifies the account; the address never appears.
    return f"{get_email_settings().FRONTEND_URL}/{path}?{urlencode({'token': token})}"


def _enqueue(db: AsyncSession, recipient: str, name: str, **context: object) -> None:
    subject, text, html = render(name, **context)
    enqueue(db, recipient=recipient, subject=subject, text_body=text, html_body=html)


async def mail_verification(
    db: AsyncSession, *, user_id: int, email: str, username: str, limited: bool = True
) -> None:
    """A verification link for `email`.

    Past the address's hourly limit no mail goes (silently: an address change must not
    mail-bomb its target), unless `limited` is false (the caller counted and refused already).
    """
    settings = get_email_settings()
    # Counted apart from the mails asked for (recovery, verification requests).
    keys = {limits.change_key(email): settings.EMAILS_PER_ADDRESS_PER_HOUR}
    if limited and await limits.count_mail(db, keys) is not None:
        logger.warning("verification mail not sent: too many to that address this hour")
        return
    lifetime = timedelta(hours=settings.EMAIL_VERIFICATION_TOKEN_EXPIRE_HOURS)
    token = await issue_token(
        db, user_id=user_id, email=email, purpose="verify_email", lifetime=lifetime
    )
    _enqueue(
        db,
        email,
        "verify_email",
        username=username,
        link=link("verify-email", token),
        hours=settings.EMAIL_VERIFICATION_TOKEN_EXPIRE_HOURS,
    )


async def mail_password_recovery(
    db: AsyncSession, *, user_id: int | None, email: str, username: str
) -> None:
    """A reset link for an active account; for none, the same work but nothing stored."""
    minutes = get_email_settings().PASSWORD_RESET_TOKEN_EXPIRE_MINUTES
    if user_id is None:
        # Rendered all the same, so that an unknown address costs about what a known one does.
        render(
            "password_recovery", username=username, link=link("reset-password", ""), minutes=minutes
        )
        return
    token = await issue_token(
        db,
        user_id=user_id,
        email=email,
        purpose="reset_password",
        lifetime=timedelta(minutes=minutes),
    )
    _enqueue(
        db,
        email,
        "password_recovery",
        username=username,
        link=link("reset-password", token),
        minutes=minutes,
    )


def mail_password_changed(db: AsyncSession, *, email: str, username: str) -> None:
    _enqueue(db, email, "password_changed", username=username)


async def mail_email_changed(
    db: AsyncSession, *, old_email: str, new_email: str, username: str
) -> None:
    """A notice to the old address (limited like any mail to it, silently)."""
    keys = {limits.change_key(old_email): get_email_settings().EMAILS_PER_ADDRESS_PER_HOUR}
    if await limits.count_mail(db, keys) is not None:
        logger.warning("address-change notice not sent: too many to that address this hour")
        return
    _enqueue(db, old_email, "email_changed", username=username, new_email=new_email)
