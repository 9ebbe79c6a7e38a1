"""Artefact digests: a changed, missing or added file is named and refused; the store's own record is not compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracseq_dagster.artifact_digest import (
    FILES_METADATA_KEY,
    TamperedArtifactError,
    files_metadata,
    folder_digest,
    verify_files,
    verify_folder,
    verify_saved_model,
)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    (folder / "champion").mkdir(parents=True)
    (folder / "champion" / "model.pkl").write_bytes(b"\x80\x05pickled model")
    (folder / "bundle.json").write_text('{"tag": "v1"}')
    return folder


def test_the_digest_depends_on_contents_and_names_not_on_timestamps(bundle: Path) -> None:
    before = folder_digest(bundle)
    (bundle / "bundle.json").touch()
    assert folder_digest(bundle) == before
    (bundle / "bundle.json").write_text('{"tag": "v2"}')
    assert folder_digest(bundle) != before


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda f: (f / "champion" / "model.pkl").write_bytes(b"\x80\x05something else"), "champion/model.pkl changed"),
        (lambda f: (f / "bundle.json").unlink(), "bundle.json is missing"),
        (lambda f: (f / "champion" / "extra.pkl").write_bytes(b"code"), "champion/extra.pkl was added"),
    ],
    ids=["changed", "missing", "added"],
)
def test_every_kind_of_change_is_refused_naming_the_file(bundle: Path, change, words: str) -> None:  # type: ignore[no-untyped-def]
    recorded = json.loads(files_metadata(bundle))
    verify_files(bundle, recorded, "model tracseq_predictions:v1")  # unchanged: passes
    change(bundle)
    with pytest.raises(TamperedArtifactError, match=f"model tracseq_predictions:v1: {words}"):
        verify_files(bundle, recorded, "model tracseq_predictions:v1")


def test_a_saved_model_ignores_the_stores_own_record_and_says_when_it_has_no_digests(bundle: Path) -> None:
    metadata = {FILES_METADATA_KEY: files_metadata(bundle)}
    (bundle / "model.yaml").write_text("labels: {}\n")  # BentoML writes its record into the model's folder
    assert verify_saved_model(bundle, metadata, "model m") is True
    assert verify_saved_model(bundle, {}, "model m") is False  # saved before digests: the caller warns
    (bundle / "champion" / "model.pkl").write_bytes(b"tampered")
    with pytest.raises(TamperedArtifactError, match="champion/model.pkl changed"):
        verify_saved_model(bundle, metadata, "model m")


def test_a_registry_digest_mismatch_names_both_digests(bundle: Path) -> None:
    recorded = folder_digest(bundle)
    verify_folder(bundle, recorded, "sample_quality v3")
    (bundle / "bundle.json").write_text("{}")
    with pytest.raises(TamperedArtifactError, match=rf"sample_quality v3: .*registry recorded {recorded[:12]}"):
        verify_folder(bundle, recorded, "sample_quality v3")
