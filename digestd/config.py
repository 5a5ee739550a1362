"""The one typed Settings object: every key with its default and help text in one table.

Settings come from the defaults below, then a TOML file (``--config PATH`` or ``DIGESTD_CONFIG``),
then ``DIGESTD_<SECTION>_<KEY>`` environment variables. Unknown keys and wrong types are refused at
start with a one-line ConfigError naming the file, section and key. Relative paths are taken
relative to the current directory; empty path keys default to a folder inside ``paths.data_dir``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digestd.atomic import write_atomic
from digestd.config_checks import validate_settings
from digestd.errors import ConfigError
from digestd.sources.spec import SourceSpec, source_specs

ENV_PREFIX = "DIGESTD_"
CONFIG_ENV = "DIGESTD_CONFIG"


def _key(default: Any, help_text: str, choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"help": help_text, "choices": choices})


@dataclass(frozen=True)
class DatabaseSettings:
    """[database]: where the data lives."""

    url: str = _key("", "SQLAlchemy URL; empty means a SQLite file digestd.db in paths.data_dir")


@dataclass(frozen=True)
class PathsSettings:
    """[paths]: the folders digestd reads and writes."""

    data_dir: str = _key("digestd-data", "folder for the database, secret key and default folders")
    inbox: str = _key("", "folder the daemon watches for new dumps (default: <data_dir>/inbox)")
    processed: str = _key("", "ingested dumps are moved here (default: <data_dir>/processed)")
    quarantine: str = _key(
        "", "unparseable dumps and their .reason (default: <data_dir>/quarantine)"
    )
    outbox: str = _key("", "the file backend writes .eml files here (default: <data_dir>/outbox)")
    feeds: str = _key("", "Atom feeds and index.html are written here (default: <data_dir>/feeds)")
    templates: str = _key("", "folder of Jinja templates (default: the bundled templates)")


@dataclass(frozen=True)
class SmtpSettings:
    """[smtp]: the mail server and the sender identity."""

    host: str = _key("localhost", "SMTP server host name")
    port: int = _key(25, "SMTP server port (25, 587 for starttls, 465 for tls)")
    security: str = _key("none", "transport security", ("none", "starttls", "tls"))
    username: str = _key("", "login user name; empty means no login")
    password: str = _key("", "login password")
    from_address: str = _key("digestd@localhost", "envelope and header sender address")
    from_name: str = _key("digestd", "display name of the sender")
    timeout: float = _key(30.0, "seconds to wait for the server before giving up")
    ca_file: str = _key("", "PEM file of authorities to trust for TLS; empty means the system's")
    connections: int = _key(
        1, "SMTP connections used at once; more send faster if the server allows"
    )
    helo_name: str = _key(
        "",
        "name given in EHLO/HELO: this host's public name, the one its address resolves back "
        "to; empty means the machine's own name",
    )


@dataclass(frozen=True)
class DeliverySettings:
    """[delivery]: how digests leave the machine."""

    backend: str = _key(
        "file", "file: write .eml files into paths.outbox; smtp: send", ("file", "smtp")
    )
    retry_minutes: float = _key(
        10.0, "first wait after a temporary failure; each next wait doubles (with jitter)"
    )
    retry_max_minutes: float = _key(240.0, "longest wait between two attempts of one digest")
    give_up_hours: float = _key(
        48.0, "a digest still failing temporarily this long after it was planned is marked failed"
    )
    error_threshold: int = _key(
        10, "temporary failures in a row that pause a run; the rest wait for the next run"
    )
    min_free_mb: float = _key(
        16.0,
        "a send run pauses while the disk of the SQLite database (or of the outbox, with the "
        "file backend) has less than this many MB free; 0 turns the check off",
    )
    rate_per_second: float = _key(
        0.0, "most messages per second over a whole run (all connections); 0 means no limit"
    )
    hard_bounces: int = _key(1, "hard bounces after which a subscriber is suppressed")
    bounce_address: str = _key(
        "",
        "envelope sender that bounces return to, as VERP (local+tag@domain); "
        "empty means smtp.from_address without VERP",
    )
    unsubscribe_mailto: str = _key(
        "",
        "address in List-Unsubscribe's mailto (deliver it into bounces.path, where the requests "
        "are read); empty means smtp.from_address",
    )


@dataclass(frozen=True)
class WebSettings:
    """[web]: the sign-up, preferences and feeds web application."""

    enabled: bool = _key(False, "digestd run also serves the web application")
    host: str = _key("127.0.0.1", "address the web application listens on")
    port: int = _key(8080, "port the web application listens on")
    confirm_hours: float = _key(48.0, "a confirmation link works this long after it was sent")
    confirm_resend_minutes: float = _key(
        60.0, "signing up again with the same address sends at most one confirmation per window"
    )
    subscribe_per_hour: int = _key(10, "sign-ups accepted from one client address per hour")
    proxy_headers: bool = _key(
        False, "trust X-Forwarded-For/-Proto from a reverse proxy on the same machine"
    )


@dataclass(frozen=True)
class BouncesSettings:
    """[bounces]: where the daemon reads delivery status notifications."""

    path: str = _key("", "maildir folder or mbox file of bounces; empty means no bounce job")
    check_minutes: float = _key(15.0, "how often the daemon reads the bounce mailbox")


@dataclass(frozen=True)
class DkimSettings:
    """[dkim]: optional DKIM signing of every digest."""

    selector: str = _key("", "DKIM selector; empty means messages are not signed")
    domain: str = _key("", "signing domain (d=); empty means the domain of smtp.from_address")
    private_key_file: str = _key("", "PEM file of the RSA or Ed25519 private key")


@dataclass(frozen=True)
class DigestSettings:
    """[digest]: what goes into a digest."""

    site_name: str = _key("digestd", "name shown in subjects, footers and feed titles")
    max_papers: int = _key(25, "most papers in one digest; the rest are counted in a line")
    full_entries: int = _key(
        10, "papers shown whole (authors, snippet, links); the rest of a digest is a compact list"
    )
    snippet_chars: int = _key(
        300, "abstracts are cut at a sentence or word boundary near this many characters"
    )
    subject: str = _key(
        "{first} and {more} more papers — {date}",
        "subject pattern: {first} (top title), {count}, {more} (count - 1), {date}, {site}; "
        'one paper gets "{first} — {date}"',
    )
    default_language: str = _key(
        "en", "language of mails and pages for new subscribers", ("en", "de")
    )
    lookback_days: int = _key(7, "a new subscriber's first digest reaches back this many days")
    list_id: str = _key("", "List-Id domain; empty means digest.<domain of smtp.from_address>")
    secret: str = _key("", "key for signed links; empty means <data_dir>/secret.key, made once")


@dataclass(frozen=True)
class FeedsSettings:
    """[feeds]: the public URL and the Atom feeds."""

    base_url: str = _key("http://localhost:8080", "public URL that feeds and links are built on")
    max_entries: int = _key(50, "newest matching papers kept in each topic feed")
    lookback_days: int = _key(90, "feeds are built from the papers stored within this many days")
    author_name: str = _key("digestd", "author named in every feed")


@dataclass(frozen=True)
class TrendingSettings:
    """[trending]: the built-in Trending topic, the day's most upvoted papers."""

    enabled: bool = _key(
        True,
        "offer the Trending topic (a feed, and a topic to follow); it stays off while no "
        "stored paper has upvotes",
    )
    papers: int = _key(10, "most papers in one day's Trending list")
    min_upvotes: int = _key(1, "papers with fewer upvotes are never trending")


@dataclass(frozen=True)
class ScheduleSettings:
    """[schedule]: when the daemon does what."""

    ingest_interval_minutes: float = _key(15.0, "how often the daemon looks into the inbox")
    send_check_minutes: float = _key(5.0, "how often the daemon looks for subscribers that are due")
    inbox_settle_seconds: float = _key(
        10.0, "an inbox file is ingested once unchanged this long (a copy may still be running)"
    )
    default_send_hour: int = _key(7, "send hour (0-23, subscriber's timezone) for new subscribers")
    default_timezone: str = _key("UTC", "IANA timezone for new subscribers")
    weekly_day: str = _key(
        "mon",
        "weekday on which weekly digests go out",
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
    )


@dataclass(frozen=True)
class FetchingSettings:
    """[fetching]: how the [[sources]] entries are polled over HTTP (their list is [[sources]])."""

    stale_hours: float = _key(
        36.0, "a source failing this long makes /healthz answer 503 and `digestd sources` say so"
    )
    contact: str = _key(
        "", "email address in the User-Agent (+mailto:); empty means smtp.from_address"
    )
    timeout_seconds: float = _key(30.0, "longest wait to connect, and between two bytes read")
    deadline_seconds: float = _key(
        120.0, "longest one request may take in all (a server trickling bytes is cut off)"
    )
    max_bytes: int = _key(20_000_000, "a response over this many bytes is refused")
    retries: int = _key(
        3, "tries after the first on a timeout, connection error, 429 or 5xx answer"
    )
    retry_seconds: float = _key(5.0, "wait before the first retry; each next wait doubles")
    spacing_seconds: float = _key(
        3.0, "least time between the end of one request to a host and the start of the next"
    )
    max_retry_after_seconds: float = _key(
        300.0, "a Retry-After asking for a longer wait ends the poll (the next one tries again)"
    )


@dataclass(frozen=True)
class Settings:
    """Every setting, one section per TOML table."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    paths: PathsSettings = field(default_factory=PathsSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    bounces: BouncesSettings = field(default_factory=BouncesSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    web: WebSettings = field(default_factory=WebSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    feeds: FeedsSettings = field(default_factory=FeedsSettings)
    trending: TrendingSettings = field(default_factory=TrendingSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    fetching: FetchingSettings = field(default_factory=FetchingSettings)
    sources: tuple[SourceSpec, ...] = ()  # the [[sources]] entries, in file order

    # Resolved views of the path keys, so no caller repeats the defaulting rule.
    @property
    def data_dir(self) -> Path:
        """The resolved data folder."""
        return Path(self.paths.data_dir).expanduser().resolve()

    def folder(self, name: str) -> Path:
        """The resolved folder for a [paths] key such as 'inbox' or 'feeds'."""
        value = getattr(self.paths, name)
        return Path(value).expanduser().resolve() if value else self.data_dir / name

    @property
    def database_url(self) -> str:
        """The configured database URL, or the SQLite file in the data folder."""
        return self.database.url or f"sqlite:///{self.data_dir / 'digestd.db'}"

    @property
    def fetch_contact(self) -> str:
        """The address named in the User-Agent of every request to a source."""
        return self.fetching.contact or self.smtp.from_address

    @property
    def templates_dir(self) -> Path | None:
        """The configured templates folder, or None for the bundled one."""
        return Path(self.paths.templates).expanduser().resolve() if self.paths.templates else None

    @property
    def list_id(self) -> str:
        """The List-Id domain: configured, or derived from the sender's domain."""
        return self.digest.list_id or f"digest.{self.smtp.from_address.rpartition('@')[2]}"

    def link_secret(self) -> str:
        """The secret for signed links: configured, or read from (made once in) the data dir."""
        if self.digest.secret:
            return self.digest.secret
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(key_file, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600)
        return key_file.read_text(encoding="utf-8").strip()


_SECTION_CLASSES: dict[str, type] = {
    "database": DatabaseSettings,
    "paths": PathsSettings,
    "smtp": SmtpSettings,
    "delivery": DeliverySettings,
    "bounces": BouncesSettings,
    "dkim": DkimSettings,
    "web": WebSettings,
    "digest": DigestSettings,
    "feeds": FeedsSettings,
    "trending": TrendingSettings,
    "schedule": ScheduleSettings,
    "fetching": FetchingSettings,
}


def settings_table() -> list[tuple[str, str, Any, str, tuple[str, ...]]]:
    """Every (section, key, default, help, choices) row, in declaration order."""
    rows = []
    for section, cls in _SECTION_CLASSES.items():
        for f in dataclasses.fields(cls):
            rows.append((section, f.name, f.default, f.metadata["help"], f.metadata["choices"]))
    return rows


def _coerce(value: Any, target: type, where: str) -> Any:
    """Check a TOML value's type (or convert an environment string) for one key."""
    if isinstance(value, str) and target is not str:
        try:
            if target is bool:
                return {"true": True, "1": True, "false": False, "0": False}[value.lower()]
            return target(value)
        except (ValueError, KeyError):
            raise ConfigError(f"{where}: expected {target.__name__}, got {value!r}") from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ConfigError(
            f"{where}: expected {target.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from defaults, the TOML file ``path`` (or $DIGESTD_CONFIG), then DIGESTD_* vars."""
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    values: dict[str, dict[str, Any]] = {name: {} for name in _SECTION_CLASSES}
    sources: tuple[SourceSpec, ...] = ()
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for section, table in data.items():
            if section == "sources":  # [[sources]]: an array of tables, one per source
                sources = source_specs(table, str(path))
                continue
            if section not in _SECTION_CLASSES:
                raise ConfigError(f"{path}: unknown section [{section}]")
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            known = {f.name: f for f in dataclasses.fields(_SECTION_CLASSES[section])}
            for key, value in table.items():
                if key not in known:
                    raise ConfigError(f"{path}: unknown key [{section}] {key}")
                target = type(known[key].default)
                values[section][key] = _coerce(value, target, f"{path}: [{section}] {key}")
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        cls = _SECTION_CLASSES.get(section)
        known = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
        if key not in known:
            raise ConfigError(f"environment: {name} names no config key")
        target = type(known[key].default)
        values[section][key] = _coerce(raw, target, f"environment: {name}")
    sections = {name: cls(**values[name]) for name, cls in _SECTION_CLASSES.items()}
    settings = Settings(**sections, sources=sources)
    choices = [(section, key, allowed) for section, key, _, _, allowed in settings_table()]
    validate_settings(settings, source, choices_of=choices)
    return settings
