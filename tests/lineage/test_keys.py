import os
import stat

import pytest

from sublab.errors import SublabError
from sublab.lineage.keys import key_id, load_private_key, load_public_key, new_keypair


def test_new_keypair_writes_pem_files_with_a_private_mode(tmp_path):
    private, public = new_keypair(tmp_path / "lab")
    assert private.name == "lab.key" and public.name == "lab.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    assert key_id(load_private_key(private).public_key()) == key_id(load_public_key(public))
    assert key_id(load_public_key(private)) == key_id(load_public_key(public))  # a private key file works too


def test_private_key_is_never_readable_by_others(tmp_path, monkeypatch):
    import sublab.io

    seen = {}
    real_replace = sublab.io.os.replace

    def spy(src, dst):
        seen[os.path.basename(dst)] = stat.S_IMODE(os.stat(src).st_mode)
        real_replace(src, dst)

    monkeypatch.setattr(sublab.io.os, "replace", spy)
    old = os.umask(0o022)  # a permissive umask would give 0644 to an ordinary file
    try:
        new_keypair(tmp_path / "lab")
    finally:
        os.umask(old)
    assert seen == {"lab.key": 0o600, "lab.pub": 0o644}  # the mode the key has when it first appears


def test_new_keypair_refuses_to_overwrite_unless_asked(tmp_path):
    private, _ = new_keypair(tmp_path / "lab")
    first = private.read_bytes()
    with pytest.raises(SublabError, match="already exists"):
        new_keypair(tmp_path / "lab")
    new_keypair(tmp_path / "lab", overwrite=True)
    assert private.read_bytes() != first


def test_bad_key_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    with pytest.raises(SublabError, match=r"bad\.pub: not a PEM public key"):
        load_public_key(bad)
    with pytest.raises(SublabError, match=r"bad\.pub: not an unencrypted PEM private key"):
        load_private_key(bad)
    with pytest.raises(SublabError, match=r"missing\.pub: key file not found"):
        load_public_key(tmp_path / "missing.pub")


def test_non_ed25519_keys_are_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pub"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(SublabError, match="not an Ed25519 key"):
        load_public_key(path)
