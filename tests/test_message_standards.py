"""Digest messages against the mail standards: RFC 5322 and 2047 headers, CRLF and line
lengths, the list headers of RFC 2369, 2919 and 8058, header injection, Message-IDs that
survive a resend, and DKIM signatures checked with dkimpy."""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import dkim.util
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from digestd.dkim_sign import SIGNED_HEADERS, DkimSigner, load_signer
from digestd.errors import ConfigError
from digestd.header_words import header_text
from digestd.message import OutgoingMessage, build_message, message_id_for
from digestd.render import RenderedMail

FROM = "papers@digest.example.org"
TO = "ada@example.net"
# 200 characters, as a signed token makes them.
URL = "https://digest.example.org/unsubscribe/" + "Ab3_-x.Zq9" * 16 + "k" * 1
MAILTO = "mailto:papers@digest.example.org?subject=unsubscribe%20Ab3_-x.Zq9"
WHEN = datetime.datetime(2025, 3, 14, 6, 30, tzinfo=datetime.UTC)
HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
}
SELECTOR, DOMAIN = "d2025", "digest.example.org"
# Text that tries to start a header of its own, or to decode into a line break.
HOSTILE = [
    "\r\nBcc: evil@x",
    "\nX-Evil: 1",
    "\rCc: evil@y",
    "=?UTF-8?Q?=0A?=",
    "=?UTF-8?Q?=0D=0ABcc:_evil@x?=",
    "=?utf-8?b?DQpCY2M6IGV2aWxAeA==?=",
    "\x00",
    "\u2028Bcc: evil@x",
    "\u2029",
    "\x85",
    "\x1b[31m",
    "\x0b\x0c\x1c",
    "\udc80",
    '"',
    "<evil@x>",
    ",",
]


def rendered(subject: str = "3 new papers for you — Mar 14") -> RenderedMail:
    return RenderedMail(
        subject=subject,
        html="<html><body><p>Ω naïve 量子 <a href='" + URL + "'>unsubscribe</a></p></body></html>",
        text=f"1.  A paper\n    https://arxiv.org/abs/2403.00001\n\nUnsubscribe: {URL}\n",
    )


def build(**overrides: Any) -> OutgoingMessage:
    options: dict[str, Any] = {
        "from_address": FROM,
        "from_name": "Paper Digest",
        "to_address": TO,
        "to_name": "Ada Lovelace",
        "list_id": "digest.example.org",
        "unsubscribe_url": URL,
        "unsubscribe_mailto": MAILTO,
        "date": WHEN,
    }
    options.update(overrides)
    return build_message(options.pop("rendered", rendered()), **options)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def raw_headers(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level header fields as written: (name, value with its folds)."""
    fields: list[tuple[bytes, bytes]] = []
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            name, value = fields.pop()
            fields.append((name, value + b"\r\n" + line))
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


def raw_header(data: bytes, name: str) -> bytes:
    [value] = [v for n, v in raw_headers(data) if n.decode().lower() == name.lower()]
    return value


def assert_wire_format(data: bytes) -> None:
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert data.endswith(b"\r\n")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


# --- structure and line format ---------------------------------------------------------------


def test_exactly_one_date_and_one_message_id() -> None:
    data = build().data
    names = [name.lower() for name, _ in raw_headers(data)]
    assert names.count(b"date") == 1 and names.count(b"message-id") == 1
    parsed = parse(data)
    assert parsed["Date"].datetime == WHEN
    assert re.fullmatch(r"<[0-9a-f]{32}@digest\.example\.org>", parsed["Message-ID"])


def test_multipart_alternative_text_then_html_with_the_unsubscribe_link_in_both() -> None:
    parsed = parse(build().data)
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert URL in plain.get_content() and URL in html.get_content()


def test_header_names_are_the_expected_set_each_once() -> None:
    names = [name.decode() for name, _ in raw_headers(build().data)]
    assert sorted(names) == sorted(HEADERS)


@pytest.mark.parametrize("subject", ["short", "x" * 2000, "word " * 400, "Ω" * 700])
def test_crlf_everywhere_and_no_line_over_998_octets(subject: str) -> None:
    long_name = "n" * 1500
    for message in (
        build(rendered=rendered(subject), from_name=long_name, to_name=long_name + " Ω"),
        build(unsubscribe_url="https://x.example/" + "u" * 880, unsubscribe_mailto=MAILTO),
        build(list_id=f"{'d' * 1200} <digest.example.org>"),
    ):
        assert_wire_format(message.data)
        assert parse(message.data).defects == []


def test_non_ascii_subject_and_names_are_encoded_words_and_decode_exactly() -> None:
    subject = "7 nouveaux articles — 量子 Ω naïve"
    data = build(from_name="Dígest Ωmega", to_name="Zoë 量子", rendered=rendered(subject)).data
    assert_wire_format(data)
    for name in ("Subject", "From", "To"):
        assert raw_header(data, name).lstrip().startswith(b"=?utf-8?"), name
    parsed = parse(data)
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Dígest Ωmega"
    assert parsed["From"].addresses[0].addr_spec == FROM
    assert parsed["To"].addresses[0].display_name == "Zoë 量子"
    assert parsed["To"].addresses[0].addr_spec == TO


# --- list headers --------------------------------------------------------------------------


def test_list_id_names_the_list() -> None:
    parsed = parse(build().data)
    assert parsed["List-Id"] == "Paper Digest <digest.example.org>"
    full = parse(build(list_id='"Paper Digest, daily" <papers.digest.example.org>').data)
    assert full["List-Id"] == '"Paper Digest, daily" <papers.digest.example.org>'


def test_long_https_url_and_mailto_stay_literal_on_one_line() -> None:
    assert len(URL) == 200
    data = build().data
    line = f"\r\nList-Unsubscribe: <{URL}>, <{MAILTO}>\r\n".encode()
    assert line in data
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in data
    parsed = parse(data)
    assert parsed["List-Unsubscribe"] == f"<{URL}>, <{MAILTO}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_unsubscribe_folds_only_at_the_comma_when_too_long_for_one_line() -> None:
    url = "https://digest.example.org/u/" + "t" * 850
    mailto = "mailto:papers@digest.example.org?subject=" + "m" * 300
    data = build(unsubscribe_url=url, unsubscribe_mailto=mailto).data
    assert f"\r\nList-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n".encode() in data
    assert_wire_format(data)


def test_without_a_mailto_the_url_stands_alone() -> None:
    data = build(unsubscribe_mailto="").data
    assert f"\r\nList-Unsubscribe: <{URL}>\r\n".encode() in data


def test_one_click_post_only_for_https() -> None:
    data = build(unsubscribe_url="http://digest.example.org/u/1").data
    assert b"List-Unsubscribe-Post" not in data
    assert b"List-Unsubscribe-Post" in build(unsubscribe_url="HTTPS://digest.example.org/u").data


def test_mailto_is_percent_encoded_where_needed() -> None:
    data = build(unsubscribe_mailto="mailto:papers@digest.example.org?subject=stop ça").data
    assert b", <mailto:papers@digest.example.org?subject=stop%20%C3%A7a>\r\n" in data


@pytest.mark.parametrize(
    "mailto",
    [
        "https://digest.example.org/u",
        "mailto:papers@digest.example.org>, <mailto:evil@x",
        "mailto:",
        "papers@digest.example.org",
    ],
)
def test_unusable_mailto_is_refused(mailto: str) -> None:
    with pytest.raises(ValueError, match="mailto"):
        build(unsubscribe_mailto=mailto)


def test_control_characters_in_uris_are_percent_encoded() -> None:
    data = build(
        unsubscribe_url="https://x.example/u\r\nBcc: evil@x",
        unsubscribe_mailto="mailto:a@x.example?subject=\nBcc: evil",
    ).data
    assert b"<https://x.example/u%0D%0ABcc:%20evil@x>" in data
    assert b"<mailto:a@x.example?subject=%0ABcc:%20evil>" in data
    assert sorted(n.decode() for n, _ in raw_headers(data)) == sorted(HEADERS)


# --- envelope --------------------------------------------------------------------------------


def test_envelope_sender_defaults_to_from_and_takes_a_verp_address() -> None:
    assert build().envelope_from == FROM
    verp = "bounces+ada=example.net@digest.example.org"
    message = build(envelope_from=verp)
    assert message.envelope_from == verp
    assert parse(message.data)["From"].addresses[0].addr_spec == FROM
    with pytest.raises(ValueError):
        build(envelope_from="bounces@x\r\nRCPT TO:<evil@x>")


# --- header injection ------------------------------------------------------------------------


def assert_no_injection(data: bytes) -> EmailMessage:
    assert_wire_format(data)
    assert sorted(n.decode() for n, _ in raw_headers(data)) == sorted(HEADERS)
    parsed = parse(data)
    assert sorted(parsed.keys()) == sorted(HEADERS)
    for name, value in parsed.items():
        text = str(value)
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", text), (name, text)
    assert [a.addr_spec for a in parsed["From"].addresses] == [FROM]
    assert [a.addr_spec for a in parsed["To"].addresses] == [TO]
    return parsed


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_subject_and_names_add_no_header(hostile: str) -> None:
    text = f"Ada {hostile} Lovelace"
    message = build(rendered=rendered(text), from_name=text, to_name=text)
    parsed = assert_no_injection(message.data)
    assert parsed["Subject"] == header_text(text)


@pytest.mark.parametrize("word", ["=?UTF-8?Q?=0A?=", "=?utf-8?b?DQpCY2M6IGV2aWxAeA==?="])
def test_literal_encoded_words_decode_as_their_own_text(word: str) -> None:
    message = build(rendered=rendered(word), to_name=word, from_name=f"x {word} y")
    parsed = assert_no_injection(message.data)
    assert parsed["Subject"] == word
    assert parsed["To"].addresses[0].display_name == word
    assert word.encode() not in message.data


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_list_description_adds_no_header(hostile: str) -> None:
    for options in (
        {"from_name": f"digest {hostile} list"},
        {"list_id": f"digest {hostile} list <digest.example.org>".replace("<evil@x>", "")},
    ):
        try:
            message = build(**options)
        except ValueError:
            continue  # refusing a hostile list id is as good as neutralising it
        parsed = assert_no_injection(message.data)
        assert "\n" not in parsed["List-Id"]


def test_message_id_with_a_line_break_is_refused() -> None:
    for bad in ("<a@b>\r\nBcc: evil@x", "<a b@c>", "a@b", "<a@b><c@d>", "<a@b@c>"):
        with pytest.raises(ValueError, match="message id"):
            build(message_id=bad)


hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12), st.sampled_from('\r\n\t =?"<>')),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(subject=hostile_text, from_name=hostile_text, to_name=hostile_text)
@pytest.mark.slow
def test_no_text_in_subject_or_names_changes_the_header_set(
    subject: str, from_name: str, to_name: str
) -> None:
    message = build(rendered=rendered(subject), from_name=from_name, to_name=to_name)
    parsed = assert_no_injection(message.data)
    assert parsed.defects == []
    assert parsed["Subject"] == header_text(subject)
    for field, name in (("From", from_name), ("To", to_name)):
        shown = parsed[field].addresses[0].display_name
        if raw_header(message.data, field).count(b"=?utf-8?") > 1:
            # Python 3.11's parser keeps the space between encoded words of a display name
            # (RFC 2047 says to drop it), so spaces are not compared then.
            assert "".join(shown.split()) == "".join(header_text(name).split())
        else:
            assert shown == header_text(name)


# --- Message-ID ------------------------------------------------------------------------------


def test_message_id_for_is_deterministic_and_distinct() -> None:
    def mid(secret: str = "s3cret", subscriber: int = 7, key: str = "2025-03-14") -> str:
        return message_id_for(
            secret=secret, subscriber_id=subscriber, digest_key=key, domain=DOMAIN
        )

    assert mid() == mid()
    assert re.fullmatch(r"<[0-9a-f]{32}@digest\.example\.org>", mid())
    assert len({mid(), mid(subscriber=8), mid(key="2025-03-15"), mid(secret="other")}) == 4
    assert mid(subscriber=1, key="23:x") != mid(subscriber=12, key="3:x")
    message = build(message_id=mid())
    assert message.message_id == mid() and parse(message.data)["Message-ID"] == mid()


@pytest.mark.parametrize("domain", ["", "example.org>\r\nBcc: x", "exa mple.org", "ex@mple"])
def test_message_id_for_refuses_a_bad_domain(domain: str) -> None:
    with pytest.raises(ValueError):
        message_id_for(secret="s", subscriber_id=1, digest_key="k", domain=domain)


# --- DKIM ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def dns_for(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> Any:
    """A dnsfunc for dkim.verify that publishes ``key``'s public half at the test selector."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)
    else:
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return record

    return dnsfunc


@pytest.fixture(scope="module")
def signer(rsa_key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> DkimSigner:
    path = tmp_path_factory.mktemp("dkim") / "rsa.pem"
    path.write_bytes(pem(rsa_key, serialization.PrivateFormat.PKCS8))
    loaded = load_signer(selector=SELECTOR, domain=DOMAIN, private_key_file=str(path))
    assert loaded is not None
    return loaded


def signature_tags(data: bytes) -> dict[bytes, bytes]:
    name, value = raw_headers(data)[0]
    assert name == b"DKIM-Signature"
    tags: dict[bytes, bytes] = dkim.util.parse_tag_value(value)
    return tags


def test_signed_message_verifies(signer: DkimSigner, rsa_key: rsa.RSAPrivateKey) -> None:
    data = build(signer=signer).data
    assert_wire_format(data)
    assert [n for n, _ in raw_headers(data)].count(b"DKIM-Signature") == 1
    assert dkim.verify(data, dnsfunc=dns_for(rsa_key))
    tags = signature_tags(data)
    assert tags[b"a"] == b"rsa-sha256" and tags[b"c"] == b"relaxed/relaxed"
    assert (tags[b"d"], tags[b"s"]) == (DOMAIN.encode(), SELECTOR.encode())
    signed = {name.strip().lower() for name in tags[b"h"].split(b":")}
    assert signed >= {name.lower() for name in SIGNED_HEADERS}
    assert {h.lower().encode() for h in HEADERS} - {b"auto-submitted"} <= signed


def test_changing_one_byte_breaks_the_signature(
    signer: DkimSigner, rsa_key: rsa.RSAPrivateKey
) -> None:
    data = build(signer=signer, rendered=rendered("3 new papers")).data
    dnsfunc = dns_for(rsa_key)
    assert dkim.verify(data, dnsfunc=dnsfunc)
    assert not dkim.verify(data.replace(b"Subject: 3 new", b"Subject: 4 new"), dnsfunc=dnsfunc)
    assert not dkim.verify(data.replace(b"A paper", b"A papes"), dnsfunc=dnsfunc)
    # A second Subject added on the way breaks it too (each signed header is signed twice).
    added = data.replace(b"\r\nSubject: ", b"\r\nSubject: Urgent\r\nSubject: ", 1)
    assert not dkim.verify(added, dnsfunc=dnsfunc)


def test_pkcs1_key_with_crlf_line_ends_loads(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "rsa1.pem"
    path.write_bytes(
        pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL).replace(b"\n", b"\r\n")
    )
    loaded = load_signer(selector=SELECTOR, domain=DOMAIN, private_key_file=str(path))
    assert loaded is not None and loaded.algorithm == b"rsa-sha256"
    assert dkim.verify(build(signer=loaded).data, dnsfunc=dns_for(rsa_key))


def test_ed25519_key_signs_and_verifies(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    loaded = load_signer(selector=SELECTOR, domain=DOMAIN, private_key_file=str(path))
    assert loaded is not None and loaded.algorithm == b"ed25519-sha256"
    data = build(signer=loaded).data
    assert dkim.verify(data, dnsfunc=dns_for(key))
    assert signature_tags(data)[b"a"] == b"ed25519-sha256"
    assert not dkim.verify(data.replace(b"Subject: ", b"Subject: X", 1), dnsfunc=dns_for(key))


def test_no_selector_means_no_signer() -> None:
    assert load_signer(selector="", domain=DOMAIN, private_key_file="") is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot be read"),
        (b"", "no PEM private key"),
        (b"not a key at all\n", "no PEM private key"),
        (b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n", "public key"),
        (b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "not base64"),
        (b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", "neither"),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "encrypted",
        ),
    ],
)
def test_unusable_key_file_is_a_one_line_config_error(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_signer(selector=SELECTOR, domain=DOMAIN, private_key_file=str(path))
    message = str(caught.value)
    assert "[dkim] private_key_file" in message and problem in message
    assert "\n" not in message


@pytest.mark.parametrize(("selector", "domain"), [("bad selector", DOMAIN), (SELECTOR, "")])
def test_selector_and_domain_must_be_dns_names(selector: str, domain: str) -> None:
    with pytest.raises(ConfigError, match=r"\[dkim\]"):
        load_signer(selector=selector, domain=domain, private_key_file="/nonexistent")
