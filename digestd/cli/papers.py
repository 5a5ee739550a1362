"""CLI command ``digestd papers``: the stored papers with their metadata, newest first."""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Annotated, Any

import typer

from digestd import store
from digestd.cli.common import app, out, reading, table
from digestd.errors import InputError
from digestd.formatting import clean_text, paper_byline, paper_date
from digestd.models import Paper

TITLE_WIDTH = 70  # characters of a title in the table; --json gives it whole


@app.command("papers")
def papers_command(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="YYYY-MM-DD",
            help="only papers dated this day or later (published, else their dump's date)",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", metavar="NAME", help="only papers this source stored first"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object per paper and line")
    ] = False,
) -> None:
    """List the stored papers, newest first: date, arXiv id and version, title, authors, and
    categories (else the source that stored it)."""
    day = _since(since)
    with reading() as session:
        papers = store.listed_papers(session, since=day, source=source)
    if as_json:
        sys.stdout.writelines(json.dumps(paper_json(p), ensure_ascii=False) + "\n" for p in papers)
        return
    if not papers:
        out.print("no stored papers" + (" match" if since or source is not None else ""))
        return
    noun = "paper" if len(papers) == 1 else "papers"
    result = table("date", "id", "title", "authors", "categories", title=f"{len(papers)} {noun}")
    # The date and id whole; the rest share what is left of the terminal's width, the title most.
    for column, ratio in zip(result.columns, (0, 0, 3, 2, 1), strict=True):
        if ratio:
            column.ratio = ratio
        else:
            column.no_wrap = True
    for paper in papers:
        byline = paper_byline(paper)
        result.add_row(
            paper_date(paper).isoformat(),
            arxiv_label(paper),
            shorten(clean_text(paper.title), TITLE_WIDTH),
            byline.authors,
            byline.where,
        )
    out.print(result)


def paper_json(paper: Paper) -> dict[str, Any]:
    """A stored paper as ``digestd papers --json`` prints it."""
    return {
        "uid": paper.uid,
        "arxiv_id": paper.arxiv_id,
        "version": paper.version,
        "title": paper.title,
        "authors": list(paper.authors),
        "categories": list(paper.categories),
        "date": paper_date(paper).isoformat(),
        "source": paper.source,
        "links": paper_links(paper),
    }


def paper_links(paper: Paper) -> dict[str, str]:
    """The paper's known pages: abs (its own, else arXiv's by id), pdf, hf and doi."""
    abs_url = paper.abs_url or (f"https://arxiv.org/abs/{paper.arxiv_id}" if paper.arxiv_id else "")
    links = {
        "abs": abs_url,
        "pdf": paper.pdf_url,
        "hf": paper.hf_url,
        "doi": f"https://doi.org/{paper.doi}" if paper.doi else "",
    }
    return {name: url for name, url in links.items() if url}


def arxiv_label(paper: Paper) -> str:
    """The arXiv id with its version, e.g. "2403.01234v2"; "—" for a paper without one."""
    if not paper.arxiv_id:
        return "—"
    return paper.arxiv_id + (f"v{paper.version}" if paper.version is not None else "")


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters at a word where it can be, with an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:.-") + "…"


def _since(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"--since {text!r} is not a date like 2026-03-14") from None
