import hashlib

import pytest

from sublab.errors import SublabError
from sublab.lineage.digests import (
    digest_path,
    directory_files,
    is_sha256,
    record_path,
    short,
    split_record_path,
)
from sublab.models.loading import manifest_digest


def test_file_digest_is_its_sha256(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    found = digest_path(path)
    assert found.sha256 == hashlib.sha256(b'{"a": 1}\n').hexdigest()
    assert not found.is_dir and found.files == {}


def test_directory_digest_is_a_manifest_of_its_files(tmp_path):
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "sub" / "w.safetensors").write_bytes(b"w")
    found = digest_path(tmp_path / "m")
    assert found.is_dir
    assert found.files == {
        "config.json": hashlib.sha256(b"{}").hexdigest(),
        "sub/w.safetensors": hashlib.sha256(b"w").hexdigest(),
    }
    assert found.sha256 == manifest_digest(found.files)


def test_directory_digest_ignores_hidden_files_records_and_top_level_card(tmp_path):
    model = tmp_path / "m"
    (model / ".cache").mkdir(parents=True)
    (model / "sub").mkdir()
    (model / "config.json").write_text("{}")
    (model / ".cache" / "x").write_text("x")
    (model / ".tmp-file").write_text("x")
    (model / "README.md").write_text("card")
    (model / "sub" / "README.md").write_text("kept: only the top-level card is left out")
    (model / "inner.intoto.jsonl").write_text("{}")
    assert directory_files(model) == ["config.json", "sub/README.md"]
    before = digest_path(model).sha256
    (model / "README.md").write_text("a new card")
    assert digest_path(model).sha256 == before


def test_digest_of_a_missing_path_names_it(tmp_path):
    with pytest.raises(SublabError, match="nope"):
        digest_path(tmp_path / "nope")


def test_record_paths(tmp_path):
    assert record_path(tmp_path / "model") == tmp_path / "model.intoto.jsonl"
    pair = (tmp_path / "raw.jsonl", tmp_path / "raw.jsonl.intoto.jsonl")
    assert split_record_path(pair[0]) == pair
    assert split_record_path(pair[1]) == pair


def test_current_directory_resolves_to_a_named_artifact(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path / "model")
    artifact, record = split_record_path(".")
    assert artifact.name == "model" and record == tmp_path / "model.intoto.jsonl"


def test_helpers():
    assert is_sha256("a" * 64) and not is_sha256("A" * 64) and not is_sha256("a" * 63) and not is_sha256(None)
    assert short("0123456789abcdef" * 4) == "sha256:0123456789ab…"
    assert short(None) == "-"


def test_remembered_file_digests_follow_a_replaced_or_edited_file(tmp_path):
    from sublab.io import atomic_write_bytes
    from sublab.lineage.digests import file_sha256

    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"a" * 64)
    assert file_sha256(path) == hashlib.sha256(b"a" * 64).hexdigest()
    atomic_write_bytes(path, b"b" * 64)  # same size, new inode
    assert file_sha256(path) == hashlib.sha256(b"b" * 64).hexdigest()
    path.write_bytes(b"c" * 65)  # edited in place
    assert file_sha256(path) == hashlib.sha256(b"c" * 65).hexdigest()
