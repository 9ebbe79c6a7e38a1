"""What SOP citations cost: packing them at Bento build time, and adding them to an answer at serve time.

    .venv/bin/python benchmarks/rag_citations.py [--answers 20000]

Builds a real index of the example lab documents (the SOP-014 extraction procedure among
them), packs every recommendation kind's citations as ``prediction_bento`` does
(documents/citation_pack.py), then times ``PackedCitations.attach`` on answers worded by
sample_quality's own ``recommend``, each with five risk factors drawn from its features (a
mix of factors the SOPs answer and factors they do not), against the same answers without
citations. The machine load is printed with the numbers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    from tracseq_dagster.documents.citation_pack import pack_sop_citations
    from tracseq_dagster.documents.environment import set_offline_environment
    from tracseq_dagster.documents.examples import generate_examples
    from tracseq_dagster.documents.pipeline import index_folder
    from tracseq_dagster.features import FEATURE_NAMES
    from tracseq_dagster.models.sample_quality import recommend
    from tracseq_dagster.serving.predictor import Answer
    from tracseq_dagster.serving.recommendation_citations import PackedCitations

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=20_000)
    args = parser.parse_args()
    set_offline_environment()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_examples(root / "documents")
        started = time.perf_counter()
        index_folder(root / "documents", lake_root=root / "lake", lancedb_uri=root / "db", in_process=True)
        indexed = time.perf_counter() - started
        (root / "bundle").mkdir()
        started = time.perf_counter()
        outcome = pack_sop_citations(root / "bundle", str(root / "db"))
        packed_s = time.perf_counter() - started
        assert outcome.packed, outcome
        citations = PackedCitations.load(root / "bundle")
        assert citations is not None
        rng = random.Random(0)
        record = {"freeze_thaw_cycles": 4, "rin": 5.1, "din": None, "a260_280": 1.6, "a260_230": 1.4,
                  "concentration_ng_ul": 3.2, "storage_location": "FRZ-03/R2/B14/A7", "storage_temp_c": -12.0,
                  "max_temp_deviation_c": 6.0, "temp_excursions": 2, "sample_type": "DNA", "site": "north",
                  "operator_id": "OP-7", "box_occupancy": 97}  # fmt: skip
        features = {name: 1.0 for name in FEATURE_NAMES}
        answers, records = [], []
        for _ in range(args.answers):
            factors = rng.sample(FEATURE_NAMES, 5)
            response = {
                "risk_factors": [{"feature": f} for f in factors],
                "recommendations": recommend(factors, record, features),
            }
            answers.append(Answer(response, features))
            records.append(record)
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            cited = citations.attach(answers, records, recommend)
            timings.append((time.perf_counter() - t0) / len(answers) * 1e6)
        with_any = sum(any(found for found in a.response["recommendation_citations"]) for a in cited)
        print(
            f"load average {load_average()}\n"
            f"index of the example documents: {indexed:.1f} s; packing (one retrieval per distinct question, "
            f"{len(citations.kinds)} kinds cited): {packed_s:.1f} s\n"
            f"adding citations: {statistics.median(timings):.1f} µs per answer (median of 5 passes over {len(answers):,} "
            f"answers of 5 risk factors; min {min(timings):.1f}, max {max(timings):.1f}); {with_any / len(cited):.0%} of "
            f"the answers had at least one cited recommendation"
        )


if __name__ == "__main__":
    main()
