"""CLI command ``digestd match``: which stored papers a query matches, and its backtest."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import date
from typing import Annotated

import typer

from digestd import jobs, store
from digestd.cli.common import app, out, reading, table
from digestd.match import Hit, compile_query, hit_labels
from digestd.models import Paper

_BAR_WIDTH = 30


@app.command("match")
def match_command(
    query: str,
    limit: Annotated[int, typer.Option(help="most papers to show", min=1)] = 20,
    backtest: Annotated[
        bool,
        typer.Option(
            "--backtest", help="count the papers the query would have caught on each day instead"
        ),
    ] = False,
    days: Annotated[
        int,
        typer.Option(help="with --backtest: how many days of stored history", min=1),
    ] = 30,
) -> None:
    """Show which stored papers a query matches, and why; or, with --backtest, how many papers
    it would have caught each day, to tune it before it goes live.

    A query that starts with "-" goes after "--": digestd match -- "-survey llm".
    """
    compile_query(query)  # a QueryError names the position
    with reading() as session:
        papers = store.papers_of_last_days(session, days) if backtest else store.all_papers(session)
    if backtest:
        _print_backtest(query, papers, days)
    else:
        _print_matches(query, papers, limit)


def _print_matches(query: str, papers: list[Paper], limit: int) -> None:
    found = jobs.match_queries({"q": query}, papers).get("q")
    ranked = sorted(found.items(), key=lambda item: (-item[1].score, item[0]))
    by_id = {p.id: p for p in papers}
    result = table(
        "score", "date", "title", "matched", title=f"{len(found)} of {len(papers)} papers match"
    )
    for paper_id, match in ranked[:limit]:
        paper = by_id[paper_id]
        hits = ", ".join(_describe(hit, paper) for hit in match.hits)
        result.add_row(f"{match.score:.2f}", paper.dump_date.isoformat(), paper.title, hits)
    if found:
        out.print(result)
    else:
        out.print(f"no stored paper matches ({len(papers)} papers searched)")
    if len(found) > limit:
        out.print(f"… and {len(found) - limit} more (use --limit)")


def _describe(hit: Hit, paper: Paper) -> str:
    """A hit as the table shows it: ``llm (title ×2)``, ``author: Yann LeCun``, ``cat:cs.CL``."""
    if hit.field in ("title", "abstract"):
        return f"{hit.term} ({hit.field} ×{hit.count})"
    labels = hit_labels([hit], authors=paper.authors, categories=paper.categories)
    return ", ".join(labels) or hit.term


def _print_backtest(query: str, papers: list[Paper], days: int) -> None:
    if not papers:
        out.print("no papers are stored yet: nothing to backtest against")
        return
    matches = jobs.match_queries({"q": query}, papers).get("q")
    by_day: dict[date, list[Paper]] = defaultdict(list)
    for paper in papers:
        by_day[paper.dump_date].append(paper)
    caught = {day: [p for p in stored if p.id in matches] for day, stored in by_day.items()}
    most = max(len(found) for found in caught.values())
    result = table(
        "day",
        "papers",
        "caught",
        "share",
        "",
        "best match",
        title=f"{query!r} over the last {days} days of stored papers",
    )
    for day in sorted(by_day):
        found = caught[day]
        best = max(found, key=lambda p: (matches[p.id or 0].score, -(p.id or 0)), default=None)
        bar = "█" * round(_BAR_WIDTH * len(found) / most) if most else ""
        result.add_row(
            day.isoformat(),
            str(len(by_day[day])),
            str(len(found)),
            f"{len(found) / len(by_day[day]):.0%}",
            bar,
            best.title if best else "",
        )
    out.print(result)
    counts = [len(found) for found in caught.values()]
    busiest = max(caught, key=lambda day: (len(caught[day]), day))
    out.print(
        f"caught {sum(counts)} of {len(papers)} papers over {len(counts)} days with papers;"
        f" per day: mean {statistics.mean(counts):.1f}, median {statistics.median(counts):g},"
        f" most {len(caught[busiest])} ({busiest.isoformat()}); days with none: {counts.count(0)}"
    )
