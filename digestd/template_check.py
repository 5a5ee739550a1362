"""The check an operator's templates pass before anything is sent: every template of the folder
compiles, and the digest templates render sample digests in every language, so that a broken
override is reported at start with its file and line, never at send time."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import jinja2

from digestd.config import Settings
from digestd.digest import Digest, DigestEntry
from digestd.errors import ConfigError
from digestd.formatting import Byline
from digestd.mail_view import MailOptions, mail_options
from digestd.render import DigestRenderer, default_templates_dir, mail_environment
from digestd.validation import LANGUAGES

# The templates that make a digest mail, which an operator may override (README, "Templates").
DIGEST_TEMPLATES = ("digest.html", "digest_entry.html", "digest.txt", "digest_entry.txt")


@dataclass(frozen=True)
class TemplateProblem:
    """One template that fails: its file name, the line (0 if unknown), and what is wrong."""

    template: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.template}, line {self.line}" if self.line else self.template
        return f"template {where}: {self.message}"


def check_templates(
    templates_dir: Path | None, options: MailOptions | None = None
) -> list[TemplateProblem]:
    """Every problem of the templates in ``templates_dir`` (the bundled ones if None): those
    that do not compile, and the digest templates that fail to render sample digests."""
    folder = Path(templates_dir or default_templates_dir())
    problems = _compile_all(folder, templates_dir)
    if problems:
        return problems
    for language in LANGUAGES:
        try:
            renderer = DigestRenderer(templates_dir, language=language, options=options)
            for digest in sample_digests(language):
                renderer.render(digest)
        except jinja2.TemplateError as exc:
            return [_problem(exc, folder)]
    return []


def _compile_all(folder: Path, templates_dir: Path | None) -> list[TemplateProblem]:
    env = mail_environment(templates_dir, "en")
    problems = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".html", ".txt", ".xml") or not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        try:
            env.parse(path.read_text(encoding="utf-8"), name=name, filename=str(path))
        except jinja2.TemplateSyntaxError as exc:
            problems.append(TemplateProblem(name, exc.lineno or 0, exc.message or str(exc)))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(TemplateProblem(name, 0, f"cannot be read: {exc}"))
    return problems


def _problem(exc: jinja2.TemplateError, folder: Path) -> TemplateProblem:
    """The template file and line that ``exc`` (raised while rendering) points at."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateProblem(exc.name or "?", exc.lineno or 0, exc.message or str(exc))
    name, line = "?", 0
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if path.suffix in (".html", ".txt") and path.parent.resolve() == folder.resolve():
            name, line = path.name, frame.lineno or 0
    message = exc.message if isinstance(exc, jinja2.UndefinedError) and exc.message else str(exc)
    return TemplateProblem(name, line, message)


def sample_digests(language: str) -> list[Digest]:
    """Digests that use every variable of the digest templates: a long one (papers shown whole,
    a compact list, more counted), a one-paper one, and one without optional links."""
    entries = tuple(_sample_entry(number) for number in range(1, 15))
    full = Digest(
        subscriber_name="Ada Lovelace",
        subscriber_email="ada@example.org",
        digest_date=date(2026, 3, 14),
        entries=entries,
        more_count=20,
        unsubscribe_url="https://digest.example.org/unsubscribe/t",
        manage_url="https://digest.example.org/manage/t",
        site_name="digestd",
        more_papers=(("A paper past the cap", "https://arxiv.org/abs/2603.00100"),),
        view_url="https://digest.example.org/digest/t",
        pause_url="https://digest.example.org/pause/t",
        language=language,
        new_count=340,
        query_count=3,
    )
    one = Digest(**{**full.__dict__, "entries": entries[:1], "more_count": 0, "more_papers": ()})
    bare = Digest(
        **{**one.__dict__, "manage_url": None, "view_url": None, "pause_url": None, "new_count": 0}
    )
    return [full, one, bare]


def _sample_entry(number: int) -> DigestEntry:
    title = f"Sample paper {number} on $\\alpha$-divergence for language models"
    abstract = "We study language models. " * 20
    return DigestEntry(
        uid=f"arxiv:2603.{number:05d}",
        title=title,
        abstract=abstract,
        url=f"https://arxiv.org/abs/2603.{number:05d}",
        score=1.0,
        reasons=("your query “language models”",),
        matched_terms=("language", "model"),
        title_segments=((title, False),),
        abstract_segments=(("We study ", False), ("language", True), (abstract[17:], False)),
        byline=Byline(authors="Ada Lovelace, Alan Turing", where="cs.CL"),
        links=(("abstract", f"https://arxiv.org/abs/2603.{number:05d}"),),
        day=date(2026, 3, 13),
        upvotes=number,
        revised_version=2 if number == 2 else None,
        found_in=(("query", "language models"), ("topic", "Agents")),
    )


def require_good_templates(settings: Settings) -> None:
    """Refuse to start with a ConfigError naming the first broken template, when ``[paths]
    templates`` points at an operator's own folder (the bundled templates are tested)."""
    if settings.templates_dir is None:
        return
    problems = check_templates(settings.templates_dir, mail_options(settings))
    if problems:
        more = (
            f" (and {len(problems) - 1} more; run digestd check-templates)"
            if len(problems) > 1
            else ""
        )
        raise ConfigError(f"{problems[0]}{more}")
