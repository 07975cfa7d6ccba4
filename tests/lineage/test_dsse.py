import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sublab.lineage.dsse import (
    PAYLOAD_TYPE,
    EnvelopeError,
    b64decode_strict,
    open_envelope,
    pae,
    seal,
    verify_envelope,
)
from sublab.lineage.keys import key_id

STATEMENT = {"_type": "https://in-toto.io/Statement/v1", "b": [1, 2.5, "é"], "a": {"z": None, "y": True}}


def test_pae_matches_the_dsse_spec_example():
    # The worked example of the DSSE v1 protocol document.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters():
    assert pae("t", "é".encode()) == b"DSSEv1 1 t 2 \xc3\xa9"


def test_unsigned_envelope_roundtrips_canonically():
    line = seal(STATEMENT)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    envelope = open_envelope(line)
    assert envelope.statement == STATEMENT
    assert envelope.signatures == ()
    assert envelope.payload == b'{"_type":"https://in-toto.io/Statement/v1","a":{"y":true,"z":null},"b":[1,2.5,"\xc3\xa9"]}'
    raw = json.loads(line)
    assert raw["payloadType"] == PAYLOAD_TYPE and raw["signatures"] == []
    assert seal(envelope.statement) == line  # reserializes identically


def test_signed_envelope_verifies_only_with_its_key():
    key = Ed25519PrivateKey.generate()
    envelope = open_envelope(seal(STATEMENT, key))
    assert envelope.key_ids == [key_id(key.public_key())]
    assert verify_envelope(envelope, [key.public_key()])
    assert not verify_envelope(envelope, [Ed25519PrivateKey.generate().public_key()])


def test_signature_covers_the_payload():
    key = Ed25519PrivateKey.generate()
    raw = json.loads(seal(STATEMENT, key))
    other = json.loads(seal({**STATEMENT, "b": [1]}))
    raw["payload"] = other["payload"]
    assert not verify_envelope(open_envelope(json.dumps(raw)), [key.public_key()])


def test_non_canonical_payload_is_rejected():
    raw = json.loads(seal(STATEMENT))
    raw["payload"] = base64.b64encode(json.dumps(STATEMENT, indent=1).encode()).decode()
    with pytest.raises(EnvelopeError, match="canonical"):
        open_envelope(json.dumps(raw))


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ("not json", "invalid JSON"),
        ("[]", "not a DSSE envelope"),
        ('{"payload": "", "payloadType": "text/plain", "signatures": []}', "payloadType"),
        ('{"payload": "!!", "payloadType": "application/vnd.in-toto+json", "signatures": []}', "base64"),
        ('{"payload": "WzFd", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
         "not a JSON object"),
        ('{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [{}]}',
         "signature 0"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(envelope, message):
    with pytest.raises(EnvelopeError, match=message):
        open_envelope(envelope)


def test_strict_base64_rejects_altered_padding_bits():
    assert b64decode_strict("YQ==") == b"a"
    with pytest.raises(EnvelopeError, match="non-canonical"):
        b64decode_strict("YR==")  # decodes to b"a" too with lenient decoders
