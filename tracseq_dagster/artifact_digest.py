"""SHA-256 digests of model artefacts, recorded when they are made and checked before they are served.

A model travels from the MLflow artifact store into a bundle, from the bundle into the BentoML
model store, and from there into every replica. Each hop is a copy someone could change (a
shared volume, an artifact bucket, a hand-edited pickle): a pickle is code, so a changed file
must be refused, not loaded. Two records make that checkable:

* the registry: each registered version carries ``artifact_sha256``, the digest of its model
  artifact folder, tagged at registration; the bundle export downloads the artifact, checks it
  against the tag and only then loads it;
* the Bento's model: its metadata holds the SHA-256 of every file of the bundle
  (``files_sha256``), written when the model is saved; the service checks them before it
  loads anything and refuses to start, naming the file, when one differs, is missing or was added.

A version registered before digests existed has no tag: it is exported with a warning and its
card says ``artifact_verified: false``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

#: Model version tag holding the digest of the version's model artifact folder.
ARTIFACT_DIGEST_TAG = "artifact_sha256"
#: Metadata key of a BentoML model holding ``{relative path: sha256}`` of its files.
FILES_METADATA_KEY = "files_sha256"
_CHUNK = 1 << 20


class TamperedArtifactError(RuntimeError):
    """An artefact whose files are not the ones recorded when it was made."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(folder: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``folder``, sorted by path."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def folder_digest(folder: Path, *, ignore: tuple[str, ...] = ()) -> str:
    """One digest of a folder: SHA-256 over its files' paths and digests (independent of timestamps),
    leaving out the files named in ``ignore``."""
    lines = "".join(f"{path}\0{sha}\n" for path, sha in file_digests(folder).items() if path not in ignore)
    return hashlib.sha256(lines.encode()).hexdigest()


def verify_files(folder: Path, expected: Mapping[str, str], what: str, *, ignore: tuple[str, ...] = ()) -> None:
    """Raise :class:`TamperedArtifactError` naming the first file of ``folder`` that differs from ``expected``
    (files named in ``ignore``, such as the store's own record of the model, are not compared)."""
    found = {path: sha for path, sha in file_digests(folder).items() if path not in ignore}
    for path in sorted(set(expected) | set(found)):
        if path not in found:
            raise TamperedArtifactError(
                f"{what}: {path} is missing (it was recorded when the model was saved); refusing to serve it"
            )
        if path not in expected:
            raise TamperedArtifactError(f"{what}: {path} was added after the model was saved; refusing to serve it")
        if found[path] != expected[path]:
            raise TamperedArtifactError(
                f"{what}: {path} changed since the model was saved (sha256 {found[path][:12]}…, recorded "
                f"{expected[path][:12]}…); refusing to serve it: rebuild the Bento from the registry"
            )


def model_artifact_digest(folder: Path) -> str:
    """The digest of a downloaded MLflow model artifact, without MLflow's record of which
    registered version it was downloaded as (it differs between the logged and the registered URI)."""
    return folder_digest(folder, ignore=(MLFLOW_REGISTRY_RECORD,))


def verify_folder(folder: Path, expected_digest: str, what: str) -> None:
    """Raise :class:`TamperedArtifactError` when the model artifact in ``folder`` is not the one registered."""
    found = model_artifact_digest(folder)
    if found != expected_digest:
        raise TamperedArtifactError(
            f"{what}: the artifact's sha256 is {found[:12]}…, the registry recorded {expected_digest[:12]}…; "
            "refusing to package it: it was changed after registration (re-register the model)"
        )


def verify_saved_model(folder: Path, metadata: Mapping[str, object], what: str) -> bool:
    """Check a BentoML model's files against the digests in its metadata; False when it has none
    (saved before digests existed: served unverified, the caller says so)."""
    recorded = metadata.get(FILES_METADATA_KEY)
    if not recorded:
        return False
    verify_files(folder, json.loads(str(recorded)), what, ignore=(BENTOML_MODEL_RECORD,))
    return True


#: The file MLflow adds to a downloaded model naming the registered version it was downloaded as.
MLFLOW_REGISTRY_RECORD = "registered_model_meta"
#: The file in which BentoML's model store keeps a model's own record (labels, metadata: the digests).
BENTOML_MODEL_RECORD = "model.yaml"


def files_metadata(folder: Path) -> str:
    """The JSON written into a BentoML model's metadata under :data:`FILES_METADATA_KEY`."""
    return json.dumps(file_digests(folder), sort_keys=True)
