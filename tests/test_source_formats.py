"""Source formats: each fixture (tests/fixtures/sources, written in the shapes of real arXiv API,
arXiv RSS, Hugging Face and JSON Lines answers) parses to exactly its papers; detection picks the
right parser; error answers are SourceFailure, empty days no error, bad input a one-line
DumpError."""

from __future__ import annotations

import contextlib
import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digestd.errors import DumpError, SourceFailure
from digestd.ingest import (
    FORMATS,
    ParsedPaper,
    detect_format,
    paper_identity,
    paper_uid,
    parse_dump_bytes,
)
from digestd.ingest.arxiv_api import parse_arxiv_api
from digestd.ingest.arxiv_rss import parse_arxiv_rss
from digestd.ingest.hf_daily import parse_hf_daily
from digestd.ingest.jsonl import parse_jsonl
from digestd.ingest.papers import ARXIV_ID, find_arxiv_id, split_arxiv_id, split_authors

SOURCES = Path(__file__).parent / "fixtures" / "sources"
REFERENCE = date(2026, 6, 30)
SPARSE = "Sparse Mixture Routers for Tiny Language Models"
SPARSE_ABSTRACT = "We route tokens through sparse experts. Tiny models gain a lot."


def parse(name: str, *, format: str | None = None) -> tuple[date, tuple[ParsedPaper, ...]]:
    dump = parse_dump_bytes((SOURCES / name).read_bytes(), reference=REFERENCE, format=format)
    assert dump.warnings == ()
    return dump.dump_date, dump.papers


# --- detection and counts -------------------------------------------------------------------

EXPECTED = {  # file: (format, dump date, number of papers)
    "arxiv-api-current.xml": ("arxiv-api", date(2026, 6, 12), 3),
    "arxiv-api-legacy.xml": ("arxiv-api", date(2016, 10, 9), 2),
    "arxiv-api-v2.xml": ("arxiv-api", date(2026, 6, 20), 1),
    "arxiv-api-empty.xml": ("arxiv-api", date(2026, 6, 13), 0),
    "arxiv-rss.xml": ("arxiv-rss", date(2026, 6, 12), 4),
    "arxiv-rss-empty.xml": ("arxiv-rss", date(2026, 6, 13), 0),
    "hf-daily.json": ("hf-json", date(2026, 6, 12), 3),
    "hf-empty.json": ("hf-json", REFERENCE, 0),
    "papers.jsonl": ("jsonl", date(2026, 6, 12), 4),
    "daily-text.txt": ("text", date(2026, 6, 12), 2),
}
FAILING = {
    "arxiv-api-error.xml": ("arxiv-api", SourceFailure, "arXiv API error: incorrect id format"),
    "arxiv-rss-error.xml": ("arxiv-rss", SourceFailure, "arXiv RSS error: Bad archive"),
    "papers-bad.jsonl": ("jsonl", DumpError, "line 3: field 'title' is missing"),
}


def test_every_fixture_is_listed() -> None:
    assert {p.name for p in SOURCES.iterdir()} == set(EXPECTED) | set(FAILING)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_is_detected_and_parses_to_its_papers(name: str) -> None:
    format, day, count = EXPECTED[name]
    data = (SOURCES / name).read_bytes()
    assert detect_format(data) == format
    dump = parse_dump_bytes(data, reference=REFERENCE)
    assert (dump.format, dump.dump_date, len(dump.papers)) == (format, day, count)
    assert dump.warnings == ()
    assert parse_dump_bytes(data, reference=REFERENCE, format=format) == dump
    assert all(p.title for p in dump.papers)


@pytest.mark.parametrize("name", sorted(FAILING))
def test_error_answers_and_bad_lines_raise(name: str) -> None:
    format, error, message = FAILING[name]
    data = (SOURCES / name).read_bytes()
    assert detect_format(data) == format
    with pytest.raises(error, match=message) as raised:
        parse_dump_bytes(data, reference=REFERENCE)
    assert "\n" not in str(raised.value)
    if error is DumpError:
        assert not isinstance(raised.value, SourceFailure)


# --- arXiv API ------------------------------------------------------------------------------


def test_arxiv_api_current_layout_field_by_field() -> None:
    _, (sparse, cross, revised) = parse("arxiv-api-current.xml")
    assert sparse == ParsedPaper(
        title=SPARSE,
        abstract=SPARSE_ABSTRACT,
        arxiv_id="2606.01234",
        version=1,
        authors=("Ada Quill", "Bruno Ferreira-Lima"),
        categories=("cs.LG", "cs.CL"),
        published=date(2026, 6, 11),
        updated=date(2026, 6, 11),
        comment="9 pages, 4 figures",
        abs_url="https://arxiv.org/abs/2606.01234",
        pdf_url="https://arxiv.org/pdf/2606.01234v1",
    )
    assert cross == ParsedPaper(
        title="Learning Flux Compactifications with Equivariant Networks",
        abstract=(
            r"We search the landscape of flux vacua with an $E(3)$-equivariant network and find"
            r" $\mathcal{O}(10^{4})$ candidate vacua with $g_s < 0.1$. The method scales as"
            r" $\sim N\log N$ in the number of fluxes."
        ),
        arxiv_id="2606.01377",
        version=1,
        doi="10.1103/PhysRevD.113.064021",
        authors=("Chiara Benedetti",),
        categories=("hep-th", "cs.LG"),  # primary first, the repeated hep-th once
        published=date(2026, 6, 11),
        updated=date(2026, 6, 11),
        journal_ref="Phys. Rev. D 113, 064021 (2026)",
        comment="41 pages; code at https://example.org/flux",
        abs_url="https://arxiv.org/abs/2606.01377",
        pdf_url="https://arxiv.org/pdf/2606.01377v1",
    )
    assert (revised.arxiv_id, revised.version) == ("2605.04321", 2)
    assert (revised.published, revised.updated) == (date(2026, 5, 20), date(2026, 6, 10))
    assert revised.authors == ("Dana Okafor", "Émile Garnier", "Fei Wong")
    assert revised.categories == ("cs.CL", "cs.AI")


def test_arxiv_api_legacy_layout_field_by_field() -> None:
    _, (old, new) = parse("arxiv-api-legacy.xml")
    assert old == ParsedPaper(
        title="Dust Lanes in Edge-on Spiral Galaxies: a Radiative Transfer Survey",
        abstract=(
            "We model the dust lanes of twelve edge-on spiral galaxies with a three-dimensional"
            " radiative transfer code. The dust scale height is $h_d \\approx 0.5\\,h_*$ in every"
            " galaxy, and the face-on optical depth stays below $\\tau_V = 1$."
        ),
        arxiv_id="astro-ph/0601001",
        version=1,
        doi="10.1086/500123",
        authors=("Ada Quill", "G. H. Okonkwo"),
        categories=("astro-ph",),
        published=date(2006, 1, 2),
        updated=date(2006, 1, 2),
        journal_ref="Astrophys. J. 640 (2006) 123-137",
        comment="14 pages, 7 figures, accepted by ApJ",
        abs_url="https://arxiv.org/abs/astro-ph/0601001",
        pdf_url="https://arxiv.org/pdf/astro-ph/0601001v1",
    )
    assert (new.arxiv_id, new.version, new.doi) == ("0801.1234", 3, None)
    assert new.categories == ("cond-mat.stat-mech", "cond-mat.other")


def test_arxiv_api_v2_is_the_same_paper_with_a_new_version() -> None:
    _, (v1, *_) = parse("arxiv-api-current.xml")
    _, (v2,) = parse("arxiv-api-v2.xml")
    assert paper_uid(v1) == paper_uid(v2) == "arxiv:2606.01234"
    assert (v1.version, v2.version) == (1, 2)
    assert (v2.published, v2.updated) == (date(2026, 6, 11), date(2026, 6, 19))
    assert v2.abstract.endswith("and now also on multilingual benchmarks.")


def test_arxiv_api_without_entries_but_with_results_warns() -> None:
    text = (SOURCES / "arxiv-api-empty.xml").read_text()
    text = text.replace("<opensearch:totalResults>0<", "<opensearch:totalResults>5<")
    dump = parse_arxiv_api(text, reference=REFERENCE)
    assert dump.papers == ()
    assert dump.warnings == ("the feed reports 5 results but holds no entries",)


def test_arxiv_api_entry_without_title_is_skipped_with_a_warning() -> None:
    text = (SOURCES / "arxiv-api-v2.xml").read_text()
    text = text.replace(f"<title>{SPARSE}</title>", "")
    dump = parse_arxiv_api(text, reference=REFERENCE)
    assert dump.papers == ()
    assert dump.warnings == (
        "entry 1 (http://arxiv.org/abs/2606.01234v2): <title> is missing; skipped",
    )


# --- arXiv RSS ------------------------------------------------------------------------------


def test_arxiv_rss_field_by_field() -> None:
    day, (new, cross, replace, replace_cross) = parse("arxiv-rss.xml")
    assert day == date(2026, 6, 12)  # the channel's own day, not 04:00 UTC's
    assert new == ParsedPaper(
        title="Tokenizer-Free Byte Models Learn Morphology",
        abstract=(
            "Byte-level language models need no tokenizer. We probe their hidden states and find"
            " units that track morphemes in \\textit{eleven} languages."
        ),
        arxiv_id="2606.02001",
        version=1,
        authors=("Hana Sato", "Ivan Petrov", "Jun Li"),
        categories=("cs.LG", "cs.CL"),
        published=date(2026, 6, 12),
        updated=date(2026, 6, 12),
        abs_url="https://arxiv.org/abs/2606.02001",
        pdf_url="https://arxiv.org/pdf/2606.02001v1",
        announce_type="new",
    )
    assert [p.announce_type for p in (new, cross, replace, replace_cross)] == [
        "new",
        "cross",
        "replace",
        "replace-cross",
    ]
    assert cross.authors == ("Karl Lindqvist, Jr.", "Mara Costa")
    assert cross.categories == ("eess.SY", "cs.LG", "cs.RO")
    assert cross.published == date(2026, 6, 12)
    assert (replace.title, replace.arxiv_id, replace.version) == (SPARSE, "2606.01234", 2)
    assert (replace.published, replace.updated) == (None, date(2026, 6, 12))
    assert (replace_cross.arxiv_id, replace_cross.version) == ("2511.09876", 4)
    assert replace_cross.published is None


def test_arxiv_rss_id_from_the_description_when_there_is_no_guid() -> None:
    text = (SOURCES / "arxiv-rss.xml").read_text()
    text = text.replace('<guid isPermaLink="false">oai:arXiv.org:2606.02001v1</guid>', "")
    text = text.replace("<arxiv:announce_type>new</arxiv:announce_type>", "")
    paper = parse_arxiv_rss(text, reference=REFERENCE).papers[0]
    assert (paper.arxiv_id, paper.version, paper.announce_type) == ("2606.02001", 1, "new")


def test_arxiv_rss_without_pub_date_uses_last_build_date_then_the_reference() -> None:
    text = (SOURCES / "arxiv-rss-empty.xml").read_text()
    text = text.replace("<pubDate>Sat, 13 Jun 2026 00:00:00 -0400</pubDate>", "")
    assert parse_arxiv_rss(text, reference=REFERENCE).dump_date == date(2026, 6, 13)
    text = text.replace("<lastBuildDate>Sat, 13 Jun 2026 04:00:01 +0000</lastBuildDate>", "")
    assert parse_arxiv_rss(text, reference=REFERENCE).dump_date == REFERENCE


# --- Hugging Face ---------------------------------------------------------------------------


def test_hf_daily_field_by_field() -> None:
    day, (sparse, zero, agents) = parse("hf-daily.json")
    assert day == date(2026, 6, 12)  # two of three items were on the 12 June page
    assert sparse == ParsedPaper(
        title=SPARSE,
        abstract=SPARSE_ABSTRACT,
        arxiv_id="2606.01234",
        authors=("Ada Quill", "Bruno Ferreira-Lima"),  # a hidden author keeps the name
        published=date(2026, 6, 11),
        abs_url="https://arxiv.org/abs/2606.01234",
        hf_url="https://huggingface.co/papers/2606.01234",
        upvotes=12,
    )
    assert zero.upvotes == 0
    assert zero.title == "Video Diffusion with Sparse Attention Windows"
    assert (agents.upvotes, agents.authors) == (87, ())


def test_hf_bare_paper_objects_are_read_too() -> None:
    items = json.loads((SOURCES / "hf-daily.json").read_text())
    bare = json.dumps([item["paper"] for item in items])
    assert parse_hf_daily(bare, reference=REFERENCE) == parse_hf_daily(
        (SOURCES / "hf-daily.json").read_text(), reference=REFERENCE
    )


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b'{"error": "Invalid date"}', SourceFailure, "Hugging Face error: Invalid date"),
        (b'{"papers": []}', SourceFailure, "expected a JSON array .* keys papers"),
        (b'[{"paper": "2606.01234"}]', SourceFailure, "item 1: 'paper' is a string"),
        (b"[1, 2]", SourceFailure, "item 1 is a number, expected an object"),
        (b'[{"paper": {"id": "2606.01234",', DumpError, "JSON is not well-formed: .* line 1"),
        (b"[" * 100_000, DumpError, "JSON"),
    ],
)
def test_hf_unexpected_shapes_and_bad_json(data: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as raised:
        parse_dump_bytes(data, reference=REFERENCE)
    assert "\n" not in str(raised.value)


# --- JSON Lines -----------------------------------------------------------------------------


def test_jsonl_field_by_field() -> None:
    day, (sparse, doi, other, old) = parse("papers.jsonl")
    assert day == date(2026, 6, 12)
    assert sparse == ParsedPaper(
        title=SPARSE,
        abstract=SPARSE_ABSTRACT,
        arxiv_id="2606.01234",
        version=1,
        authors=("Ada Quill", "Bruno Ferreira-Lima"),
        categories=("cs.LG", "cs.CL"),
        published=date(2026, 6, 11),
        abs_url="https://arxiv.org/abs/2606.01234",
    )
    assert (doi.arxiv_id, doi.doi) == (None, "10.48550/example.2026.77")
    assert doi.authors == ("Lena Voss", "Tomás Ruiz")  # one string, "and" separates
    assert doi.categories == ("math.OC", "stat.ML")
    assert doi.published == date(2026, 6, 12)
    assert paper_uid(doi) == "doi:10.48550/example.2026.77"
    assert (other.arxiv_id, other.doi, other.abstract) == (None, None, "")
    assert paper_uid(other).startswith("t:")  # an id of its own: known by its title
    assert other.abs_url == "https://openreview.net/forum?id=Xk2p9Qa"
    assert (old.arxiv_id, old.version) == ("hep-th/9901001", 2)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "abstract": ""}', "line 2: field 'title' is missing"),
        ('{"title": "T", "abstract": ""}', "line 2: field 'id' is missing"),
        ('{"id": "x", "title": "T"}', "line 2: field 'abstract' is missing"),
        ('{"id": "x", "title": "", "abstract": ""}', "line 2: field 'title' is empty"),
        ('{"id": 7, "title": "T", "abstract": ""}', "line 2: field 'id' must be a string, got a n"),
        ('{"id": "x", "title": "T", "abstract": "", "authors": [1]}', "line 2: field 'authors'"),
        ('{"id": "x", "title": "T", "abstract": "", "date": "June"}', "line 2: field 'date'"),
        ('["x", "T"]', "line 2: expected a JSON object, got an array"),
        ('{"id": "x", "title": ', "line 2: not valid JSON"),
    ],
)
def test_jsonl_bad_line_names_the_line_and_field(line: str, message: str) -> None:
    text = '{"id": "2606.03001", "title": "Fine", "abstract": "Fine."}\n' + line + "\n"
    with pytest.raises(DumpError, match=message) as raised:
        parse_jsonl(text, reference=REFERENCE)
    assert "\n" not in str(raised.value)


def test_one_jsonl_line_is_detected_as_jsonl() -> None:
    data = b'{"id": "2606.03001", "title": "Fine", "abstract": "Fine."}\n'
    assert detect_format(data) == "jsonl"
    assert len(parse_dump_bytes(data, reference=REFERENCE).papers) == 1


# --- one paper, several sources -------------------------------------------------------------


def test_the_shared_paper_has_one_identity_everywhere() -> None:
    found = [
        p
        for name in ("arxiv-api-current.xml", "arxiv-api-v2.xml", "hf-daily.json", "papers.jsonl")
        for p in parse(name)[1]
        if p.title == SPARSE
    ]
    assert len(found) == 4
    assert {paper_identity(p) for p in found} == {paper_identity(found[0])}
    (text_paper,) = [p for p in parse("daily-text.txt")[1] if p.title == SPARSE]
    assert text_paper.arxiv_id is None
    assert paper_identity(text_paper)[1] == paper_identity(found[0])[1]  # same title key


# --- hostile and malformed input ------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE feed [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol3;</title></feed>
"""
EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>&secret;</title></channel></rss>
"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, EXTERNAL])
def test_entity_expansion_is_refused(data: bytes) -> None:
    assert detect_format(data) in {"arxiv-api", "arxiv-rss"}
    with pytest.raises(DumpError, match="XML refused: it declares the entity") as raised:
        parse_dump_bytes(data, reference=REFERENCE)
    assert not isinstance(raised.value, SourceFailure)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'<feed xmlns="http://www.w3.org/2005/Atom">\n<entry>\n</feed>', "line 3, column 2"),
        (b"<rss><channel><title>x</channel></rss>", "mismatched tag at line 1, column 24"),
        (b"<?xml version='1.0'?>\n<rss>\n<channel>", "no element found at line 3"),
    ],
)
def test_malformed_xml_is_a_one_line_dump_error(data: bytes, message: str) -> None:
    with pytest.raises(DumpError, match=f"XML is not well-formed: .*{message}") as raised:
        parse_dump_bytes(data, reference=REFERENCE)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'<feed xmlns="urn:other"/>', "root element is <feed>"),
        (b"<rss/>", "RSS feed has no <channel>"),
        (b'<?xml version="1.0"?><!-- a comment --><rss version="2.0"><item/></rss>', "channel"),
    ],
)
def test_xml_of_another_shape_is_a_dump_error(data: bytes, message: str) -> None:
    with pytest.raises(DumpError, match=message):
        parse_dump_bytes(data, reference=REFERENCE)


def test_unknown_format_is_a_dump_error() -> None:
    with pytest.raises(DumpError, match="unknown format 'csv'"):
        parse_dump_bytes(b"a,b\n", reference=REFERENCE, format="csv")
    assert len(FORMATS) == 5


@pytest.mark.parametrize(
    ("data", "format"),
    [
        (b"\xef\xbb\xbf  <?xml version='1.0'?>\n<!-- c -->\n<feed/>", "arxiv-api"),
        (b"<atom:feed xmlns:atom='http://www.w3.org/2005/Atom'/>", "arxiv-api"),
        (b"<rdf:RDF/>", "text"),
        (b"  [\n]", "hf-json"),
        (b'{\n  "error": "x"\n}', "hf-json"),
        (b'{"error": "x"}', "hf-json"),
        (b'{"a": 1}\n{"b": 2}\n', "jsonl"),
        (b"new\n\nMar 14\n", "text"),
    ],
)
def test_detection(data: bytes, format: str) -> None:
    assert detect_format(data) == format


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_nothing_but_dump_error(data: bytes) -> None:
    with contextlib.suppress(DumpError):
        parse_dump_bytes(data, reference=REFERENCE)


@given(
    st.sampled_from([b"<feed>", b"<rss><channel>", b"[", b"{", b'{"id": "1", "title": "t"}\n{']),
    st.binary(max_size=400),
)
def test_bytes_after_a_format_start_raise_nothing_but_dump_error(head: bytes, tail: bytes) -> None:
    with contextlib.suppress(DumpError):
        parse_dump_bytes(head + tail, reference=REFERENCE)


# --- ids and authors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("2404.01234v2", ("2404.01234", 2)),
        ("2404.01234", ("2404.01234", None)),
        ("0801.1234v3", ("0801.1234", 3)),
        ("arXiv:2404.01234v12", ("2404.01234", 12)),
        ("oai:arXiv.org:2604.21935v1", ("2604.21935", 1)),
        ("http://arxiv.org/abs/astro-ph/0601001v1", ("astro-ph/0601001", 1)),
        ("https://arxiv.org/pdf/2607.28628v1", ("2607.28628", 1)),
        ("hep-th/9901001", ("hep-th/9901001", None)),
        ("math.GT/0309136", ("math.GT/0309136", None)),
        ("math-ph/0101001v2", ("math-ph/0101001", 2)),
        ("10.1103/PhysRevB.71.184511", None),
        ("2404.123", None),
        ("foo/0601001", None),
        ("2404.01234v2 trailing", None),
    ],
)
def test_split_arxiv_id(reference: str, expected: tuple[str, int | None] | None) -> None:
    assert split_arxiv_id(reference) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("as shown in arXiv:hep-th/9901001v2.", "hep-th/9901001"),
        ("see https://arxiv.org/abs/math.GT/0309136", "math.GT/0309136"),
        ("cf. arXiv: astro-ph/0601001", "astro-ph/0601001"),
        ("arXiv:2403.01234v2", "2403.01234"),
        ("hep-th/9901001 without a prefix", None),
        ("arXiv:foo-bar/9901001", None),
    ],
)
def test_find_arxiv_id_knows_old_style_ids(text: str, expected: str | None) -> None:
    assert find_arxiv_id("A title", text) == expected


old_style_text = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["arXiv:", "arxiv : ", "arxiv.org/abs/", "ARXİV:", "x/", ""]),
            st.sampled_from(["hep-th", "math.GT", "math-ph", "cond-mat.mes-hall", "foo", "cs"]),
            st.sampled_from(["/9901001", "/990100", "/99010012", "9901001", "/٩٩٠١٠٠١"]),
            st.sampled_from(["", "v2"]),
        ).map("".join),
        st.sampled_from([" ", "See ", ".", "/", ":", "2403.01234", "ſ", "K"]),
    ),
    max_size=5,
).map("".join)


@given(old_style_text, st.one_of(old_style_text, st.text(max_size=30)))
def test_find_arxiv_id_matches_the_plain_pattern_for_old_style_ids(title: str, text: str) -> None:
    found = ARXIV_ID.search(title) or ARXIV_ID.search(text)
    assert find_arxiv_id(title, text) == (found["id"] if found else None)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("A. Smith, B. Jones and C. Li", ("A. Smith", "B. Jones", "C. Li")),
        ("A. Smith, B. Jones, and C. Li", ("A. Smith", "B. Jones", "C. Li")),
        ("Sandra Anderson, Ferdinand Alexander", ("Sandra Anderson", "Ferdinand Alexander")),
        ("John Smith, Jr., Ann Lee", ("John Smith, Jr.", "Ann Lee")),
        ("  Solo   Author ", ("Solo Author",)),
        ("", ()),
    ],
)
def test_split_authors(names: str, expected: tuple[str, ...]) -> None:
    assert split_authors(names) == expected
