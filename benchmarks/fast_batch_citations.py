"""What SOP citations cost on sample_quality's /fast/batch_predict, per 1,000 rows.

    .venv/bin/python benchmarks/fast_batch_citations.py [--work benchmarks/out/fast_citations] [--passes 7]

Builds the product as benchmarks/serving.py does (generated exports → ``tracseq ingest`` →
``tracseq train`` (LightGBM) → ``tracseq bento build``; reused when ``--work`` already holds
it), indexes the example lab documents and packs their citations as ``prediction_bento`` does
(documents/citation_pack.py), then, in process on the served bundle's predictor, times what
the route does for Arrow bodies of 1,000 and 100,000 generated records:

* ``predict_table`` + ``table`` (the answer without citations), and ``cite_table`` on it (the
  side table in the schema metadata: what every answer pays when SOPs were packed);
* the same with ``?recommendations=text`` (worded per row), and ``cite_table`` adding the
  ``recommendation_citations`` column aligned with the recommendations.

CPU time (``time.process_time``) of this process, median of ``--passes``, so the other
engineers' load moves the numbers less than wall-clock would; the load average is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_ms(run: Callable[[], Any], passes: int) -> tuple[float, Any]:
    """Median CPU milliseconds of ``run`` over ``passes`` (after one untimed pass), and its last result."""
    result = run()
    timings = []
    for _ in range(passes):
        began = time.process_time()
        result = run()
        timings.append((time.process_time() - began) * 1e3)
    return statistics.median(timings), result


def main() -> None:
    from serving import arrow_body, build_product, product_env

    from tracseq_dagster.documents.citation_pack import pack_sop_citations
    from tracseq_dagster.documents.environment import set_offline_environment
    from tracseq_dagster.documents.examples import generate_examples
    from tracseq_dagster.documents.pipeline import index_folder
    from tracseq_dagster.models.sample_quality import recommend
    from tracseq_dagster.serving import columnar
    from tracseq_dagster.serving.predictor import SampleQualityPredictor
    from tracseq_dagster.serving.recommendation_citations import FIELD, PackedCitations
    from tracseq_dagster.serving.table_citations import METADATA_KEY, cite_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/fast_citations"))
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--rows", default="1000,100000")
    args = parser.parse_args()
    set_offline_environment()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tag, bundle = build_product(work, product_env(work))
    predictor = SampleQualityPredictor(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_examples(root / "documents")
        index_folder(root / "documents", lake_root=root / "lake", lancedb_uri=root / "db", in_process=True)
        (root / "citations").mkdir()
        assert pack_sop_citations(root / "citations", str(root / "db"), "minilm-onnx").packed
        citations = PackedCitations.load(root / "citations")
    assert citations is not None
    print(f"{tag}: {predictor.variants['champion'].scorer.family} champion; {len(citations.kinds)} kinds cited")
    print("| rows | answer | without citations (ms CPU) | citations added (ms CPU) | per 1,000 rows | share | rows cited |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for rows in (int(r) for r in args.rows.split(",")):
        body = arrow_body(rows, seed=3)
        valid = columnar.validate_table(columnar.read_table(body, columnar.ARROW_STREAM))
        for texts in (False, True):
            base, answers = cpu_ms(lambda t=texts: predictor.predict_table(valid, texts=t), args.passes)  # type: ignore[misc]
            table_ms, table = cpu_ms(lambda a=answers: a.table("b"), args.passes)  # type: ignore[misc]
            cited_ms, cited = cpu_ms(lambda a=answers, t=table: cite_table(a, t, citations, recommend), args.passes)  # type: ignore[misc]
            side = cited.schema.metadata[METADATA_KEY.encode()]
            with_any = sum(any(found) for found in cited[FIELD].to_pylist()) if texts else None
            print(f"| {rows:,} | {'worded (?recommendations=text)' if texts else 'default'} | {base + table_ms:.1f} | "
                  f"{cited_ms:.2f} (side table {len(side):,} bytes) | {cited_ms / rows * 1000:.2f} ms | "
                  f"{cited_ms / (base + table_ms):.1%} | {'' if with_any is None else f'{with_any / rows:.0%}'} |")  # fmt: skip
    print(f"load average {load_average()} (at the end); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
