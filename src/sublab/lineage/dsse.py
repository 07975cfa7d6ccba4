"""DSSE envelopes (https://github.com/secure-systems-lab/dsse, protocol v1) around in-toto statements.

The payload is the statement canonicalized with RFC 8785 (JSON Canonicalization Scheme), so a record
reserializes byte for byte. Signing covers the pre-authentication encoding (PAE) of payload type and payload;
an unsigned envelope has an empty ``signatures`` list. The envelope is written as one canonical JSON line.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sublab.lineage.keys import key_id

PAYLOAD_TYPE = "application/vnd.in-toto+json"


class EnvelopeError(ValueError):
    """A record that is not a well-formed DSSE envelope holding canonical JSON."""


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope: payload bytes, the decoded statement and the signatures ``(keyid, sig bytes)``."""

    payload_type: str
    payload: bytes
    statement: dict[str, Any]
    signatures: tuple[tuple[str, bytes], ...]

    @property
    def key_ids(self) -> list[str]:
        return [keyid for keyid, _ in self.signatures]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON value."""
    return rfc8785.dumps(obj)


def b64decode_strict(text: str) -> bytes:
    """Decode standard base64, rejecting anything that does not re-encode to the same text."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as err:
        raise EnvelopeError(f"invalid base64 ({err})") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise EnvelopeError("non-canonical base64")
    return data


def seal(statement: dict[str, Any], key: Ed25519PrivateKey | None = None) -> bytes:
    """Envelope ``statement`` (signed with ``key`` if given) and return the record line, newline included."""
    payload = canonical_json(statement)
    signatures = []
    if key is not None:
        sig = key.sign(pae(PAYLOAD_TYPE, payload))
        signatures.append({"keyid": key_id(key.public_key()), "sig": base64.b64encode(sig).decode("ascii")})
    envelope = {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": signatures,
    }
    return canonical_json(envelope) + b"\n"


def open_envelope(line: str | bytes) -> Envelope:
    """Parse one envelope line; raise :class:`EnvelopeError` saying what is wrong."""
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EnvelopeError(f"invalid JSON ({err})") from None
    except RecursionError:
        raise EnvelopeError("JSON nested too deeply") from None
    if not isinstance(raw, dict) or not {"payload", "payloadType", "signatures"} <= raw.keys():
        raise EnvelopeError("not a DSSE envelope (needs payload, payloadType, signatures)")
    if raw["payloadType"] != PAYLOAD_TYPE:
        raise EnvelopeError(f"payloadType is {raw['payloadType']!r}, expected {PAYLOAD_TYPE!r}")
    if not isinstance(raw["payload"], str) or not isinstance(raw["signatures"], list):
        raise EnvelopeError("payload must be a string and signatures a list")
    payload = b64decode_strict(raw["payload"])
    try:
        statement = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EnvelopeError(f"payload is not JSON ({err})") from None
    except RecursionError:
        raise EnvelopeError("payload is JSON nested too deeply") from None
    if not isinstance(statement, dict):
        raise EnvelopeError("payload is not a JSON object")
    try:
        canonical = canonical_json(statement)
    except (RecursionError, ValueError, TypeError, rfc8785.CanonicalizationError):
        raise EnvelopeError("payload cannot be canonicalized (nested too deeply or not JSON values)") from None
    if canonical != payload:
        raise EnvelopeError("payload is not RFC 8785 canonical JSON (edited by hand?)")
    signatures = []
    for i, entry in enumerate(raw["signatures"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
            raise EnvelopeError(f"signature {i} has no sig string")
        try:
            sig = b64decode_strict(entry["sig"])
        except EnvelopeError as err:
            raise EnvelopeError(f"signature {i}: {err}") from None
        signatures.append((str(entry.get("keyid", "")), sig))
    return Envelope(raw["payloadType"], payload, statement, tuple(signatures))


def verify_envelope(envelope: Envelope, keys: list[Ed25519PublicKey]) -> bool:
    """Whether a signature of ``envelope`` verifies under one of ``keys`` (keyids are hints, not trusted)."""
    message = pae(envelope.payload_type, envelope.payload)
    for _, sig in envelope.signatures:
        for key in keys:
            try:
                key.verify(sig, message)
            except InvalidSignature:
                continue
            return True
    return False
