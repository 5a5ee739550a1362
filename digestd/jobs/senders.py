"""The sender the config asks for, the digests' messages as the run's sender identity builds
them, and the warnings about the setup that the daemon, `digestd send` and `digestd web` give
once at start.

Both warnings are about mail that goes out over SMTP, where receiving systems judge it:
- the name given in EHLO: a server that calls itself ``localhost`` is distrusted or refused
  by receiving systems (it cannot be checked against the sending address);
- one-click unsubscribe (RFC 8058): its link must be https, or mail providers do not offer it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from digestd.config import Settings
from digestd.deliver import OutgoingMessage, build_message
from digestd.jobs.plan_job import PreparedDigest
from digestd.render import mail_options, render_digest
from digestd.runtime import Runtime
from digestd.runtime import open_sender as open_sender  # its home is the runtime
from digestd.tokens import unsubscribe_mailto, verp_address


def machine_name() -> str:
    """The name this machine gives in EHLO when ``[smtp] helo_name`` is empty: the one
    aiosmtplib sends (socket.getfqdn())."""
    return socket.getfqdn()


def setup_warnings(settings: Settings, *, machine: str) -> list[str]:
    """One line for each way the delivery setup makes mail look wrong to receiving systems:
    a ``localhost`` EHLO name (``machine`` is this machine's name), an http one-click
    unsubscribe link. None for the file backend, where no mail leaves."""
    if settings.delivery.backend != "smtp":
        return []
    warnings = []
    helo_name = settings.smtp.helo_name
    if _is_localhost(helo_name or machine):
        whose = "[smtp] helo_name" if helo_name else "this machine's name, given in EHLO,"
        warnings.append(
            f"{whose} is {helo_name or machine!r}, which receiving mail servers distrust or "
            "refuse; set [smtp] helo_name to this host's public name (the one its address "
            "resolves back to)"
        )
    if urlsplit(settings.feeds.base_url).scheme != "https":
        warnings.append(
            f"[feeds] base_url {settings.feeds.base_url!r} is not https, so mail providers "
            "do not offer one-click unsubscribe (RFC 8058 needs an https link); set "
            "[feeds] base_url to the https address of the web application"
        )
    return warnings


def start_warnings(settings: Settings) -> list[str]:
    """``setup_warnings`` for this machine (its name is looked up only when it matters)."""
    needs_name = settings.delivery.backend == "smtp" and not settings.smtp.helo_name
    return setup_warnings(settings, machine=machine_name() if needs_name else "")


def _is_localhost(name: str) -> bool:
    name = name.strip().rstrip(".").lower()
    return name == "localhost" or name.startswith("localhost.")


Builder = Callable[[PreparedDigest], tuple[OutgoingMessage, str]]


def message_builder(runtime: Runtime) -> Builder:
    """Renders and builds one digest's message (and subject) with the runtime's sender
    identity, link secret and signer (ConfigError for a broken DKIM setup)."""
    identity, signer, secret = runtime.identity, runtime.signer, runtime.link_secret
    templates_dir = runtime.settings.templates_dir
    options = mail_options(runtime.settings)
    mailto = identity.unsubscribe_mailto

    def build(item: PreparedDigest) -> tuple[OutgoingMessage, str]:
        rendered = render_digest(item.digest, templates_dir=templates_dir, options=options)
        message = build_message(
            rendered,
            from_address=identity.from_address,
            from_name=identity.from_name,
            to_address=item.email,
            to_name=item.name,
            list_id=identity.list_id,
            unsubscribe_url=item.digest.unsubscribe_url,
            unsubscribe_mailto=unsubscribe_mailto(mailto, secret, item.subscriber_id, item.email),
            envelope_from=(
                verp_address(identity.bounce_address, item.subscriber_id, secret)
                if identity.bounce_address
                else ""
            ),
            date=item.planned_at,
            message_id=item.message_id,
            signer=signer,
            encoded_pieces=runtime.encoded_pieces,
        )
        return message, rendered.subject

    return build
