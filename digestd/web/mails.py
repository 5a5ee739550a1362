"""The mails a sign-up sends: the confirmation link, or "you are already subscribed" with the
preference link. Built like digests (digestd.message) and sent with the configured sender.

A mail that cannot be sent is logged and forgotten: the sign-up is stored either way, and
signing up again after the resend window sends another.
"""

from __future__ import annotations

import logging
from datetime import datetime

import css_inline

from digestd.i18n import language_or_default, translations
from digestd.message import OutgoingMessage, build_message
from digestd.render import RenderedMail
from digestd.runtime import Runtime
from digestd.tokens import link_url, verp_address
from digestd.web.templating import template_source, web_environment

log = logging.getLogger("digestd.web")

MAIL_KINDS = ("confirm", "already")


def mail_subject(kind: str, site_name: str, language: str = "en") -> str:
    """The subject of a sign-up mail of ``kind`` ("confirm" or "already") in ``language``."""
    _ = translations(language).gettext
    if kind == "confirm":
        return _("Confirm your subscription to %(site_name)s") % {"site_name": site_name}
    return _("You are already subscribed to %(site_name)s") % {"site_name": site_name}


def sign_up_message(
    runtime: Runtime,
    *,
    kind: str,
    subscriber_id: int,
    email: str,
    now: datetime,
    nonce: str | None = None,
    language: str = "en",
) -> OutgoingMessage:
    """The mail of ``kind`` to a subscriber in ``language``: text and HTML, with their signed
    links (a "confirm" mail's link names the sign-up request ``nonce``).

    Raises ValueError for an address the message cannot carry or a confirm mail without a
    nonce, ConfigError for a broken DKIM setup."""
    if kind not in MAIL_KINDS:
        raise ValueError(f"unknown sign-up mail {kind!r}")
    if kind == "confirm" and nonce is None:
        raise ValueError("a confirm mail names its sign-up request")
    settings, identity, secret = runtime.settings, runtime.identity, runtime.link_secret
    base_url = settings.feeds.base_url
    language = language_or_default(language, settings.digest.default_language)
    subject = mail_subject(kind, settings.digest.site_name, language)
    context = {
        "subject": subject,
        "site_name": settings.digest.site_name,
        "email": email,
        "confirm_hours": _hours(settings.web.confirm_hours, language),
        "confirm_url": (
            link_url(base_url, secret, "confirm", subscriber_id, email, reference=nonce)
            if kind == "confirm"
            else ""
        ),
        "manage_url": link_url(base_url, secret, "manage", subscriber_id, email),
        "unsubscribe_url": link_url(base_url, secret, "unsubscribe", subscriber_id, email),
    }
    environment = web_environment(settings.templates_dir, language)
    text = environment.get_template(f"web/mail_{kind}.txt").render(context)
    html = environment.get_template(f"web/mail_{kind}.html").render(context)
    html = css_inline.inline(html, extra_css=template_source(environment, "digest.css"))
    return build_message(
        RenderedMail(subject=subject, html=html, text=text),
        from_address=identity.from_address,
        from_name=identity.from_name,
        to_address=email,
        to_name="",
        list_id=identity.list_id,
        unsubscribe_url=context["unsubscribe_url"],
        envelope_from=(
            verp_address(identity.bounce_address, subscriber_id, secret)
            if identity.bounce_address
            else ""
        ),
        date=now,
        signer=runtime.signer,
        encoded_pieces=runtime.encoded_pieces,
    )


async def send_sign_up_mail(
    runtime: Runtime,
    *,
    kind: str,
    subscriber_id: int,
    email: str,
    now: datetime,
    nonce: str | None = None,
    language: str = "en",
) -> bool:
    """Build and send one sign-up mail; whether the server took it. Never raises: a failure
    is logged."""
    try:
        message = sign_up_message(
            runtime,
            kind=kind,
            subscriber_id=subscriber_id,
            email=email,
            now=now,
            nonce=nonce,
            language=language,
        )
        async with runtime.open_sender() as sender:
            result = await sender.send(message)
    except Exception:
        # Whatever went wrong (the server, the config, the address), the sign-up is stored
        # and the visitor saw their page: all there is left to do is tell the operator.
        log.exception("could not send the %s mail to %s", kind, email)
        return False
    if not result.ok:
        log.warning("the %s mail to %s was not sent: %s", kind, email, result.reply)
    return result.ok


def _hours(hours: float, language: str) -> str:
    """``hours`` in words of ``language``: "48 hours", "1 hour", "1.5 hours"."""
    return translations(language).ngettext(
        "%(num)s hour", "%(num)s hours", 1 if hours == 1 else 2
    ) % {"num": f"{hours:g}" if language == "en" else f"{hours:g}".replace(".", ",")}
