"""DKIM signatures for outgoing digests (RFC 6376, with dkimpy), and the key they are made with.

``load_signer`` reads the ``[dkim]`` key file once at start; ``DkimSigner.sign`` then puts a
``DKIM-Signature`` header on each message as the last step of building it. RSA keys (PEM,
PKCS#1 or PKCS#8) sign with rsa-sha256; Ed25519 keys (PEM, or the base64 seed that dkimpy's
``dknewkey`` writes) sign with ed25519-sha256, which dkimpy does through the PyNaCl package.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import dkim
from dkim.crypto import UnparsableKeyError, parse_private_key

from digestd.errors import ConfigError

# What a receiver must see unchanged for the digest to be ours: the addresses, what the reader
# is shown, the identity of the message and every way to unsubscribe, and the MIME structure.
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)
# Each name is listed twice while the message holds it once ("oversigning"): a header of that
# name added on the way, say a second Subject or From, then breaks the signature.
_INCLUDE_HEADERS = [*SIGNED_HEADERS, *SIGNED_HEADERS]
_RELAXED = (b"relaxed", b"relaxed")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
# A PKCS#8 Ed25519 private key is this DER prefix followed by the 32-byte seed (RFC 8410).
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")
# A DNS label, as selector and domain must be: they are written into the header unquoted.
_NAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*"
)


@dataclass(frozen=True)
class DkimSigner:
    """A signing key with its selector (s=) and signing domain (d=).

    ``private_key`` is as dkimpy takes it: an RSA key in PEM, or an Ed25519 seed in base64.
    """

    selector: str
    domain: str
    private_key: bytes

    @property
    def algorithm(self) -> bytes:
        """The DKIM signing algorithm (a=) that fits the key."""
        return b"rsa-sha256" if self.private_key.startswith(b"-----") else b"ed25519-sha256"

    def sign(self, data: bytes) -> bytes:
        """``data``, a whole message with CRLF line ends, with a DKIM-Signature header first.

        Relaxed canonicalization of header and body, so that a relay refolding a header or
        trimming trailing spaces does not break the signature. dkimpy folds the signature
        header at 72 columns with CRLF.
        """
        signature: bytes = dkim.sign(
            data,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            canonicalize=_RELAXED,
            signature_algorithm=self.algorithm,
            include_headers=_INCLUDE_HEADERS,
            linesep=b"\r\n",
        )
        return signature + data


def load_signer(*, selector: str, domain: str, private_key_file: str) -> DkimSigner | None:
    """The signer that ``[dkim]`` describes, or None when no selector is set (no signing).

    ``domain`` must already be resolved (the domain of the From address when the config
    leaves it empty). Raises ``ConfigError`` when a name is not a DNS name or the key file is
    missing, unreadable or holds no usable private key.
    """
    selector = selector.strip()
    if not selector:
        return None
    domain = domain.strip()
    for key, value in (("selector", selector), ("domain", domain)):
        if len(value) > 253 or not _NAME.fullmatch(value):
            raise ConfigError(
                f"[dkim] {key} {value!r} is not a DNS name",
                hint="check [dkim] in config.toml",
            )
    if not private_key_file:
        raise ConfigError(
            "[dkim] private_key_file is empty while [dkim] selector is set",
            hint="set it to the PEM file of the signing key, or empty the selector",
        )
    try:
        with open(private_key_file, "rb") as file:
            text = file.read(64 * 1024)
    except OSError as exc:
        raise _key_error(
            private_key_file,
            f"cannot be read: {exc.strerror or exc}",
            hint="check the path and that digestd may read the file",
        ) from None
    return DkimSigner(
        selector=selector, domain=domain, private_key=_private_key(text, private_key_file)
    )


def _private_key(text: bytes, path: str) -> bytes:
    """The key in ``text`` as dkimpy takes it, or ``ConfigError`` saying what is wrong."""
    pem = _PEM.search(text)
    if pem is None:
        # dknewkey writes an Ed25519 key as its bare base64 seed.
        seed = _base64(text)
        if seed is None or len(seed) != 32:
            raise _key_error(path, "holds no PEM private key")
        return _ed25519(seed, path)
    label, body = pem.group(1), pem.group(2)
    if b"PRIVATE KEY" not in label:
        raise _key_error(path, f"holds a {label.decode().lower()}, not a private key")
    der = _base64(body)
    if label == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type:" in body:
        raise _key_error(
            path,
            "holds an encrypted key",
            hint="write it unencrypted: openssl pkey -in KEY -out PLAIN",
        )
    if der is None:
        raise _key_error(path, "holds a PEM block that is not base64")
    if der.startswith(_ED25519_PKCS8) and len(der) == len(_ED25519_PKCS8) + 32:
        return _ed25519(der[len(_ED25519_PKCS8) :], path)
    try:
        bits = parse_private_key(der)["modulus"].bit_length()
    except (UnparsableKeyError, LookupError, TypeError, ValueError):
        raise _key_error(path, "holds neither an RSA nor an Ed25519 private key") from None
    if bits < 1024:
        # RFC 8301: verifiers must not accept signatures made with smaller RSA keys.
        raise _key_error(path, f"holds a {bits}-bit RSA key; receivers need 1024 bits or more")
    # Written again with LF line ends: dkimpy looks for the base64 between "--\n" and "\n--".
    encoded = base64.b64encode(der)
    lines = [encoded[start : start + 64] for start in range(0, len(encoded), 64)]
    return b"\n".join([b"-----BEGIN " + label + b"-----", *lines, b"-----END " + label + b"-----"])


def _ed25519(seed: bytes, path: str) -> bytes:
    """An Ed25519 seed in base64, as dkimpy signs with it (through PyNaCl)."""
    return base64.b64encode(seed)


def _key_error(path: str, problem: str, *, hint: str | None = None) -> ConfigError:
    return ConfigError(
        f"[dkim] private_key_file {path!r} {problem}",
        hint=hint or "give the RSA or Ed25519 private key in PEM",
    )


def _base64(text: bytes) -> bytes | None:
    """``text`` decoded from base64 (line breaks allowed), or None when it is not base64."""
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
