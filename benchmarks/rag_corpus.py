"""The real-document evaluation corpus: Debian documentation PDFs, fetched at exact versions.

    .venv/bin/python benchmarks/rag_corpus.py [--cache DIR]

The retrieval benchmark (benchmarks/rag.py) is judged on manuals nobody here wrote, so that
its numbers say something about a lab's own documents rather than about the project's
generated examples. The PDFs are not committed: this script downloads the exact Debian
package versions below with ``apt-get download`` (no root needed), unpacks them with
``dpkg-deb -x``, gunzips the PDFs Debian ships compressed, and checks each file's SHA-256,
so a fresh machine gets byte-identical documents or a clear error. Every document has a text
layer (live-manual-pdf was tried and left out: its PDF text extracts as nothing but URLs). The questions in
``benchmarks/rag/questions.jsonl`` name pages of exactly these files.

``split`` says which half of the evaluation a document belongs to: questions on ``dev``
documents may be looked at while tuning; ``heldout`` documents are only ever reported
(the claim "documents the project never saw" rests on them).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path.home() / ".cache" / "tracseq-rag-corpus"


@dataclass(frozen=True)
class CorpusDocument:
    file_name: str  # name in the cache and in questions.jsonl
    package: str
    version: str
    member: str  # path inside the .deb (".gz" is unpacked)
    sha256: str  # of the PDF itself
    pages: int
    split: str  # "dev" or "heldout"


DOCUMENTS: tuple[CorpusDocument, ...] = (
    CorpusDocument(
        "shared-mime-info-spec.pdf",
        "shared-mime-info",
        "2.2-1",
        "usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf",
        "4d9666c46b4d367a12e2922f4f3b114396c377106c57bbc934d03320e6888002",
        17,
        "dev",
    ),
    CorpusDocument(
        "libtasn1.pdf",
        "libtasn1-doc",
        "4.19.0-2+deb12u1",
        "usr/share/doc/libtasn1-doc/libtasn1.pdf",
        "3917eb460d87e275f9792b3597029873fd77890ed3ccebe40bbc5a3a7ee516d3",
        36,
        "dev",
    ),
    CorpusDocument(
        "R-data.pdf",
        "r-doc-pdf",
        "4.2.2.20221110-2",
        "usr/share/R/doc/manual/R-data.pdf",
        "9381a39ffeb8545a745c2618ba955b4ae4e10b9c8373cd5bc1984fff8318f8ca",
        41,
        "dev",
    ),
    CorpusDocument(
        "gmpl.pdf",
        "glpk-doc",
        "5.0-1",
        "usr/share/doc/glpk-doc/gmpl.pdf",
        "df54ba811d1fe3c041447b575997298d63b0a6366e39454ef2efc382f08203c2",
        74,
        "dev",
    ),
    CorpusDocument(
        "R-admin.pdf",
        "r-doc-pdf",
        "4.2.2.20221110-2",
        "usr/share/R/doc/manual/R-admin.pdf",
        "50e256b5f873bbee4c8482df3754fa8654f02ef693409fe5e30b2f114e3efe9f",
        85,
        "dev",
    ),
    CorpusDocument(
        "R-lang.pdf",
        "r-doc-pdf",
        "4.2.2.20221110-2",
        "usr/share/R/doc/manual/R-lang.pdf",
        "4a6120ba505021d7c208078b575fe3f5d5dc91636dcf17de8a4208adda90d7dc",
        69,
        "heldout",
    ),
    CorpusDocument(
        "R-FAQ.pdf",
        "r-doc-pdf",
        "4.2.2.20221110-2",
        "usr/share/R/doc/manual/R-FAQ.pdf",
        "de8768520d4fb90dad64c28483ffb92dca7dd9d8dc8556905b35c2e62a939255",
        52,
        "heldout",
    ),
    CorpusDocument(
        "glpk-graphs.pdf",
        "glpk-doc",
        "5.0-1",
        "usr/share/doc/glpk-doc/graphs.pdf",
        "14ba079a0ae34b6a8717b090851ad5248aa1a4ea34ac9430fdcf547c70ff305b",
        61,
        "heldout",
    ),
    CorpusDocument(
        "xlfd.pdf",
        "xorg-docs",
        "1:1.7.1-1.2",
        "usr/share/doc/xorg-docs/xlfd/xlfd.pdf.gz",
        "58ff7295a00ee98613a835374db03723be32c204ba64be3b24cd22f3e1ba142d",
        40,
        "heldout",
    ),
    CorpusDocument(
        "xorg-fonts.pdf",
        "xorg-docs",
        "1:1.7.1-1.2",
        "usr/share/doc/xorg-docs/fonts/fonts.pdf.gz",
        "0f76ed5cf335e095404eba1245e3384705c2ce8f25709602e48ffcd56d7bf3c3",
        20,
        "heldout",
    ),
    CorpusDocument(
        "XACE-Spec.pdf",
        "xorg-docs",
        "1:1.7.1-1.2",
        "usr/share/doc/xorg-docs/Xserver/XACE-Spec.pdf.gz",
        "c74bb1d09a087a7b44ea2ee7f8babb7b4bc34d22b65bc0b2a7e364472e49a48f",
        19,
        "heldout",
    ),
)

# A second, independent held-out set (issue 19: "independently, on real documents the project
# never saw"): three short manuals on other topics, never indexed beside the 11 above, with
# their own questions (benchmarks/rag/questions_fresh.jsonl, written on 2026-12-07 by reading
# the pages after the product's reranker had been chosen). Only ever reported.
FRESH_DOCUMENTS: tuple[CorpusDocument, ...] = (
    CorpusDocument(
        "cnfsat.pdf",
        "glpk-doc",
        "5.0-1",
        "usr/share/doc/glpk-doc/cnfsat.pdf",
        "87520dcbde789ffad0b31ebcfb1466f1a6401fdf44b6a1790ed1d5105e7cace1",
        6,
        "fresh",
    ),
    CorpusDocument(
        "XKB-Config.pdf",
        "xorg-docs",
        "1:1.7.1-1.2",
        "usr/share/doc/xorg-docs/input/XKB-Config.pdf.gz",
        "d0c3b6eaff5fa58fec3a2162353c504d574eca6555c669f36fc341da28027201",
        5,
        "fresh",
    ),
    CorpusDocument(
        "ctext.pdf",
        "xorg-docs",
        "1:1.7.1-1.2",
        "usr/share/doc/xorg-docs/ctext/ctext.pdf.gz",
        "a60095892fee39482bca5c3f9d913063b8891d4782fd20c326c07c2629ec8613",
        8,
        "fresh",
    ),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_corpus(
    cache: Path = DEFAULT_CACHE, *, check: bool = True, documents: tuple[CorpusDocument, ...] = DOCUMENTS
) -> dict[str, Path]:
    """file name -> local PDF path for every document of ``documents``, downloading what is missing."""
    cache.mkdir(parents=True, exist_ok=True)
    missing = [d for d in documents if not (cache / d.file_name).exists()]
    packages = sorted({(d.package, d.version) for d in missing})
    if packages:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            specs = [f"{name}={version}" for name, version in packages]
            subprocess.run(["apt-get", "download", *specs], cwd=work, check=True, capture_output=True)
            for deb in work.glob("*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
            for document in missing:
                member = work / "x" / document.member
                target = cache / document.file_name
                if member.suffix == ".gz":
                    with gzip.open(member) as source, target.open("wb") as out:
                        shutil.copyfileobj(source, out)
                else:
                    shutil.copyfile(member, target)
    paths = {d.file_name: cache / d.file_name for d in documents}
    if check:
        for document in documents:
            if document.sha256 and sha256(paths[document.file_name]) != document.sha256:
                raise RuntimeError(
                    f"{document.file_name}: SHA-256 differs from {document.package} {document.version}; delete {cache} and fetch again"
                )
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--fresh", action="store_true", help="the second, independent held-out set instead")
    args = parser.parse_args()
    documents = FRESH_DOCUMENTS if args.fresh else DOCUMENTS
    paths = fetch_corpus(args.cache, documents=documents)
    for document in documents:
        print(f"{document.split:8} {document.pages:4} pages  {sha256(paths[document.file_name])}  {paths[document.file_name]}")
    print(f"{len(documents)} documents, {sum(d.pages for d in documents)} pages")


if __name__ == "__main__":
    main()
