"""Digest templates loaded with the stylesheet inlined into their source, Jinja tags intact.

render.py inlines the stylesheet once per template, not once per message, so that rendering
thousands of digests only runs Jinja; the inlining must leave every Jinja tag where it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jinja2

# Jinja tags stand in for plain-text placeholders while the stylesheet is inlined into a template.
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_PLACEHOLDER_MARK = "@@jinja"
_PLACEHOLDER = re.compile(r"@@jinja(\d+)@@")


def inline_template_css(source: str, inline: Callable[[str], str], *, name: str) -> str:
    """The template ``source`` passed through the CSS inliner ``inline``, Jinja tags intact.

    Jinja tags are swapped for plain placeholders while the HTML is parsed and serialized, and
    swapped back after; a tag the parser dropped, copied or moved out of order is an error.
    Selectors are matched against the template itself, so a rule that depends on repeated or
    conditional content (``:nth-child``, ``+``) sees the template's one copy of it.
    """
    if _PLACEHOLDER_MARK in source:
        raise jinja2.TemplateError(f"{name}: contains {_PLACEHOLDER_MARK!r}, used for inlining")
    tags: list[str] = []

    def protect(match: re.Match[str]) -> str:
        tags.append(match.group())
        return f"{_PLACEHOLDER_MARK}{len(tags) - 1}@@"

    inlined = inline(_JINJA_TAG.sub(protect, source))
    restored: list[int] = []

    def restore(match: re.Match[str]) -> str:
        restored.append(int(match.group(1)))
        return tags[restored[-1]]

    result = _PLACEHOLDER.sub(restore, inlined)
    if restored != list(range(len(tags))):
        raise jinja2.TemplateError(
            f"{name}: inlining CSS moved or dropped Jinja tags (keep them out of places the HTML "
            "parser rearranges, such as text directly inside <table> or <tr>)"
        )
    return result + "\n" if source.endswith("\n") and not result.endswith("\n") else result


def load_template(
    env: jinja2.Environment, name: str, inline: Callable[[str], str] | None = None
) -> jinja2.Template:
    """Template ``name`` of ``env``, with the stylesheet inlined into its source by ``inline``.

    Its globals are a plain copy of the environment's: Jinja's own loader gives every template
    a ChainMap, which each render then walks to build its context.
    """
    assert env.loader is not None
    source, filename, _uptodate = env.loader.get_source(env, name)
    if inline is not None:
        source = inline_template_css(source, inline, name=filename or name)
    code = env.compile(source, name, filename)
    return env.template_class.from_code(env, code, dict(env.globals))
