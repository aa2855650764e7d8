"""Delivery of mails: an outbox table drained over SMTP by every serving process (one piece:
claiming, sending and settling a mail are one protocol, read together).

Why hand-written: a mail must be stored in the same transaction as the change that causes
it (a password reset and its notice commit together or not at all), which a broker-backed
queue (Celery, arq, taskiq, SAQ) cannot join, and none of the database-backed ones serves both
PostgreSQL and SQLite on async SQLAlchemy. The whole mechanism is this module:

- `enqueue` writes a row in the caller's transaction; the request never talks to SMTP. It is
  the one seam to swap for a real job queue later.
- `run_delivery` runs in each serving process (started by the email router's lifespan). It
  claims due mails with a lease: one UPDATE that sets `claimed_until` on rows nobody holds
  (FOR UPDATE SKIP LOCKED on PostgreSQL, so that loops never wait on each other; SQLite has
  one writer at a time, so the statement is atomic there too). Two loops, processes or
  replicas never claim the same mail, so none is sent twice in normal operation; a process
  that dies while holding mails leaves them to be claimed again once the lease ends.
- A mail the SMTP server accepted is deleted. Any other outcome puts it back with a later
  `next_attempt_at` (backoff, up to an hour) and the error; it is given up (`failed_at`,
  logged) only when the server refuses it for good (5xx) or after MAX_AGE. A mail waits in
  the table through an SMTP outage and a restart alike.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
from fastapi import FastAPI
from sqlalchemy import delete, or_, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from ..core import db as database
from ..core.models import utcnow
from .config import EmailSettings, get_email_settings
from .models import OutboxMail

logger = logging.getLogger(__name__)

# How long a claim holds: longer than a batch can take to send (BATCH times the SMTP timeout).
LEASE = timedelta(minutes=10)
BATCH = 10
# Waits between attempts of one mail: 30 s, doubling, at most an hour.
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
# A mail still undelivered this long after it was written is given up.
MAX_AGE = timedelta(days=3)
# How often an idle loop looks for due mails (seconds).
POLL_SECONDS = 2.0


def enqueue(
    db: AsyncSession, *, recipient: str, subject: str, text_body: str, html_body: str
) -> None:
    """Add a mail to the caller's transaction: it is delivered once that commits."""
    db.add(
        OutboxMail(
            recipient=recipient,
            subject=subject,
            text_body=text_body,
            html_body=html_body,
            next_attempt_at=utcnow(),
        )
    )


def now() -> datetime:
    """The current time (the tests move it)."""
    return utcnow()


async def claim(db: AsyncSession, limit: int = BATCH) -> list[OutboxMail]:
    """Take up to `limit` due mails that nobody holds, for LEASE; commits."""
    moment = now()
    due = (
        select(OutboxMail.id)
        .where(
            col(OutboxMail.failed_at).is_(None),
            col(OutboxMail.next_attempt_at) <= moment,
            or_(col(OutboxMail.claimed_until).is_(None), col(OutboxMail.claimed_until) < moment),
        )
        .order_by(col(OutboxMail.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(OutboxMail)
        .where(col(OutboxMail.id).in_(due.scalar_subquery()))
        .values(claimed_until=moment + LEASE, attempts=col(OutboxMail.attempts) + 1)
        .returning(OutboxMail)
    )
    mails = list((await db.exec(statement)).scalars().all())
    await db.commit()
    return sorted(mails, key=lambda mail: mail.id or 0)


def _message(mail: OutboxMail, settings: EmailSettings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.EMAILS_FROM
    message["To"] = mail.recipient
    message["Subject"] = mail.subject
    message.set_content(mail.text_body)
    message.add_alternative(mail.html_body, subtype="html")
    return message


async def send(mail: OutboxMail, settings: EmailSettings) -> None:
    """Hand one mail to the SMTP server (or, with no SMTP_HOST, to the log)."""
    if not settings.SMTP_HOST:
        # Zero setup outside production (production refuses to start without SMTP_HOST).
        logger.info(
            "mail (no SMTP_HOST; logged instead) to %s: %s\n%s",
            mail.recipient,
            mail.subject,
            mail.text_body,
        )
        return
    await aiosmtplib.send(
        _message(mail, settings),
        hostname=settings.SMTP_HOST,
        port=settings.smtp_port,
        username=settings.SMTP_USERNAME or None,
        password=settings.SMTP_PASSWORD.get_secret_value() or None,
        use_tls=settings.SMTP_SECURITY == "tls",
        start_tls=settings.SMTP_SECURITY == "starttls",
        timeout=settings.SMTP_TIMEOUT_SECONDS,
    )


def _refused_for_good(error: Exception) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refusal.code >= 500 for refusal in error.recipients)
    return isinstance(error, aiosmtplib.SMTPResponseException) and error.code >= 500


def _retry_wait(attempts: int) -> timedelta:
    wait: timedelta = FIRST_RETRY * 2 ** min(attempts - 1, 20)
    return min(wait, LONGEST_RETRY)


async def _settle(db: AsyncSession, mail: OutboxMail, error: Exception | None) -> None:
    if error is None:
        await db.exec(delete(OutboxMail).where(col(OutboxMail.id) == mail.id))
        await db.commit()
        return
    moment = now()
    reason = f"{type(error).__name__}: {error}"[:500]
    values: dict[str, object] = {"claimed_until": None, "last_error": reason}
    created = mail.created_at.replace(tzinfo=mail.created_at.tzinfo or moment.tzinfo)
    if _refused_for_good(error) or moment - created > MAX_AGE:
        values["failed_at"] = moment
        logger.error("mail %s given up after %s attempts: %s", mail.id, mail.attempts, reason)
    else:
        values["next_attempt_at"] = moment + _retry_wait(mail.attempts)
        logger.warning("mail %s not delivered (attempt %s): %s", mail.id, mail.attempts, reason)
    await db.exec(update(OutboxMail).where(col(OutboxMail.id) == mail.id).values(**values))
    await db.commit()


async def deliver_due(settings: EmailSettings | None = None) -> int:
    """Claim due mails and send them; how many the SMTP server accepted."""
    settings = settings or get_email_settings()
    async with database.SessionFactory() as db:
        mails = await claim(db)
        sent = 0
        for mail in mails:
            try:
                await send(mail, settings)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                await _settle(db, mail, error)
            else:
                await _settle(db, mail, None)
                sent += 1
        return sent


async def run_delivery(stop: asyncio.Event) -> None:
    """Deliver mails until `stop` is set; a failing database or SMTP server never ends it."""
    pause = POLL_SECONDS
    while not stop.is_set():
        try:
            sent = await deliver_due()
            pause = 0.0 if sent else POLL_SECONDS
        except (DBAPIError, OSError, TimeoutError) as error:
            # The database is away: the mails wait in it; try again a little later.
            logger.warning("mail delivery paused, database unavailable: %s", type(error).__name__)
            pause = min(max(pause, POLL_SECONDS) * 2, 60.0)
        except Exception:  # the loop must outlive any failure; the next round retries
            logger.exception("mail delivery round failed")
            pause = min(max(pause, POLL_SECONDS) * 2, 60.0)
        if pause:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)


@contextlib.asynccontextmanager
async def delivery_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Deliver mails in the background while the application serves."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_delivery(stop), name="mail delivery")
    try:
        yield
    finally:
        stop.set()
        # A send in progress finishes within the SMTP timeout; beyond that, the lease
        # brings the mail back later.
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            logger.warning("mail delivery still busy at shutdown; its mails will be retried")
