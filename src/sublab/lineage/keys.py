"""Ed25519 signing keys for lineage records, as PEM files (private key PKCS#8, mode 0600; public key SPKI).

Keys are made and used offline; nothing here talks to a key server. A key's id is the hex sha256 of its raw
32-byte public key, which is what DSSE signatures carry in ``keyid``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sublab.errors import SublabError
from sublab.io import atomic_write_bytes


def key_id(public_key: Ed25519PublicKey) -> str:
    """Hex sha256 of the raw public key bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def new_keypair(prefix: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a fresh Ed25519 key pair to ``<prefix>.key`` (0600) and ``<prefix>.pub``; return both paths."""
    prefix = Path(prefix)
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    for path in (private_path, public_path):
        if path.exists() and not overwrite:
            raise SublabError(f"{path}: already exists (pass --force to replace it)")
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The mode is set before the rename: the private key is never readable by others, not even for a moment.
    atomic_write_bytes(private_path, private_pem, mode=0o600)
    atomic_write_bytes(public_path, public_pem, mode=0o644)
    return private_path, public_path


def _read(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise SublabError(f"{path}: key file not found")
    return path.read_bytes()


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Load an unencrypted PEM Ed25519 private key; anything else raises :class:`SublabError`."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise SublabError(f"{path}: not an unencrypted PEM private key ({err})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SublabError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Load a PEM Ed25519 public key (a private key file is accepted too: its public half is used)."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise SublabError(f"{path}: not a PEM public key ({err})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SublabError(f"{path}: not an Ed25519 key")
    return key


def signing_key(key: str | Path | Ed25519PrivateKey | None) -> Ed25519PrivateKey | None:
    """A private key to sign with: ``None`` (no signing), a loaded key, or a PEM file to load."""
    if key is None or isinstance(key, Ed25519PrivateKey):
        return key
    return load_private_key(key)
