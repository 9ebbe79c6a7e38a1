"""The serving core without HTTP: snapshot features, request schema, scoring, advice, split, cache, stores."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from pydantic import ValidationError
from serving_support import recent_samples, request_records, trained_registry

from tracseq_dagster import features
from tracseq_dagster.features import FEATURE_NAMES, HistorySnapshot, compute_features, feature_columns
from tracseq_dagster.registry import RegistryError
from tracseq_dagster.serving import columnar, compiled_trees, leaf_bitvectors
from tracseq_dagster.serving.advice import category, recommendations, risk_factors
from tracseq_dagster.serving.bundle import export_bundle
from tracseq_dagster.serving.micro_batcher import MicroBatcher
from tracseq_dagster.serving.prediction_cache import InProcessCache, RedisCache, blob_key, cache_key
from tracseq_dagster.serving.prediction_log import BackgroundLogWriter, ParquetPredictionLog
from tracseq_dagster.serving.predictor import SampleQualityPredictor
from tracseq_dagster.serving.request_schema import SampleRecord, records_columns
from tracseq_dagster.serving.scoring import CHECKED_ROWS, QualityScorer
from tracseq_dagster.serving.traffic_split import CHALLENGER, CHAMPION, TrafficSplit
from tracseq_dagster.serving.warm_up import WARM_UP_FILE, WARM_UP_ROWS

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A registry with a LightGBM champion (v1) and a logistic challenger (v2), and their bundle."""
    folder = tmp_path_factory.mktemp("serving")
    trained = trained_registry(folder, rows=2000)
    trained.train("lightgbm", "run-1")
    trained.train("logistic", "run-2", promote=False)
    info = export_bundle(trained.registry, trained.samples, trained.features, folder / "bundle")
    return trained, info, folder / "bundle"


# -- features from a history snapshot ------------------------------------------------------------


def test_snapshot_features_equal_the_full_history_path() -> None:
    history = recent_samples(3000, seed=3)
    snapshot = HistorySnapshot.build(history)
    later = snapshot.cutoff + pd.Timedelta(hours=2)
    known = history.sample(150, random_state=1)  # their own labels must not count
    new = recent_samples(150, seed=4, id_offset=500_000)
    requests = pd.concat([known, new], ignore_index=True)
    expected = compute_features(requests, history, as_of=later)
    pd.testing.assert_frame_equal(compute_features(requests, snapshot, as_of=later), expected)
    assert (expected["operator_history_count"] > 0).all()  # the aggregates are really exercised


def test_snapshot_round_trips_and_refuses_moments_before_its_cutoff(tmp_path: Path) -> None:
    history = recent_samples(500, seed=5)
    snapshot = HistorySnapshot.build(history)
    snapshot.save(tmp_path / "history")
    loaded = HistorySnapshot.load(tmp_path / "history")
    later = snapshot.cutoff + pd.Timedelta(minutes=1)
    pd.testing.assert_frame_equal(
        compute_features(history.head(20), loaded, as_of=later), compute_features(history.head(20), history, as_of=later)
    )
    with pytest.raises(ValueError, match="need the full history"):
        compute_features(history.head(1), loaded, as_of=snapshot.cutoff)


# -- the request contract -------------------------------------------------------------------------


def test_request_schema_names_every_bad_field() -> None:
    record = request_records(recent_samples(1, seed=6))[0]
    bad = {**record, "sample_type": "plasma", "storage_temp_c": 55, "volume_ul": "lots", "sample_id": "S-1"}
    del bad["site"]
    with pytest.raises(ValidationError) as error:
        SampleRecord.model_validate(bad)
    fields = {e["loc"][0] for e in error.value.errors()}
    assert fields == {"sample_type", "storage_temp_c", "volume_ul", "sample_id", "site"}


def test_request_schema_checks_timestamp_order_and_ignores_extra_columns() -> None:
    record = request_records(recent_samples(1, seed=7))[0]
    assert SampleRecord.model_validate({**record, "lims_note": "extra"}).model_dump()["sample_id"] == record["sample_id"]
    with pytest.raises(ValidationError, match="collection_ts .* is after received_ts"):
        SampleRecord.model_validate(
            {**record, "collection_ts": (pd.Timestamp(record["received_ts"]) + pd.Timedelta(hours=1)).isoformat()}
        )
    with pytest.raises(ValidationError, match="not a plausible date"):
        SampleRecord.model_validate({**record, "collection_ts": "1661-12-06T21:13:32Z"})


def test_request_columns_give_the_features_of_the_typed_export() -> None:
    """Serving's plain column arrays and the parser's typed frame give identical features, against
    the full history and against its snapshot (missing optional fields included)."""
    history = recent_samples(400, seed=8)
    samples = recent_samples(40, seed=28, id_offset=640_000)
    samples.loc[samples.index[::4], ["extraction_ts", "rin", "din", "sequencing_ts"]] = None
    records = [SampleRecord.model_validate(r).model_dump() for r in request_records(samples)]
    columns = records_columns(records)
    assert columns["received_ts"].dtype == "datetime64[ns]" and columns["temp_excursions"].dtype == np.float64
    moment = max(history["received_ts"].max(), samples["received_ts"].max()) + pd.Timedelta(days=1)
    snapshot = HistorySnapshot.build(history)
    for against in (history, snapshot):
        from_requests = compute_features(columns, against, as_of=moment)
        from_export = compute_features(samples.drop(columns=["qc_status"]), against, as_of=moment)
        pd.testing.assert_frame_equal(from_requests[list(FEATURE_NAMES)], from_export[list(FEATURE_NAMES)])
    assert from_requests["operator_history_count"].gt(0).any()  # the history was really read


def test_features_of_a_few_rows_equal_those_of_many() -> None:
    """Up to ``_FEW_VALUES`` rows, codes and history keys are looked up in dicts instead of hash
    indexes (a micro-batch's fixed cost): the same features, with unknown and missing values,
    known and new samples; ``feature_columns`` keeps the input order and its frame is compute_features'."""
    history = recent_samples(600, seed=12)
    snapshot = HistorySnapshot.build(history)
    requests = pd.concat([history.sample(60, random_state=2), recent_samples(140, seed=13, id_offset=650_000)], ignore_index=True)
    requests.loc[requests.index[::7], ["operator_id", "sample_type"]] = ["OP-NEVER-SEEN", "plasma"]
    requests.loc[requests.index[3::7], ["site", "priority", "storage_location", "qc_status"]] = None
    moment = snapshot.cutoff + pd.Timedelta(hours=3)
    many = feature_columns(requests, snapshot, as_of=moment)
    assert len(many) > features._FEW_VALUES and list(many.sample_id) == requests["sample_id"].tolist()
    few = [feature_columns(requests.iloc[i : i + 10], snapshot, as_of=moment) for i in range(0, len(requests), 10)]
    for name, values in many.numeric.items():
        np.testing.assert_array_equal(np.concatenate([f.numeric[name] for f in few]), values, err_msg=name)
    for name, values in many.codes.items():
        np.testing.assert_array_equal(np.concatenate([f.codes[name] for f in few]), values, err_msg=name)
    assert (many.codes["sample_type"] == -1).sum() == len(requests[::7])  # the unknown type, found unknown by both
    pd.testing.assert_frame_equal(many.frame(), compute_features(requests, history, as_of=moment))


# -- predictions ------------------------------------------------------------------------------------


def test_an_installed_history_is_what_answers_use_and_keys_the_cache(served) -> None:  # type: ignore[no-untyped-def]
    """What the service's refresh from Feast (serving/online_history.py) installs: features follow it, cached answers too."""
    trained, _, bundle = served
    predictor = SampleQualityPredictor(bundle)
    assert predictor.cache_tag == predictor.tag  # the packed history: keys as before
    older = trained.samples.iloc[: len(trained.samples) // 3]
    predictor.install_history(HistorySnapshot.build(older))
    first_tag = predictor.cache_tag
    assert first_tag.startswith(predictor.tag + "-h") and first_tag != predictor.tag
    new = recent_samples(25, seed=31, id_offset=720_000)
    moment = HistorySnapshot.build(trained.samples).cutoff + pd.Timedelta(hours=1)
    served_features = predictor._features(new, moment).frame()
    expected = compute_features(new, older, as_of=moment)
    for name in ("operator_history_count", "site_failure_rate", "freezer_utilisation"):
        np.testing.assert_allclose(served_features[name].to_numpy(float), expected[name].to_numpy(float), err_msg=name)
    predictor.install_history(HistorySnapshot.build(trained.samples))
    assert predictor.cache_tag not in (first_tag, predictor.tag)


def test_answers_equal_the_registered_model_on_offline_features(served) -> None:  # type: ignore[no-untyped-def]
    trained, info, bundle = served
    predictor = SampleQualityPredictor(bundle)
    new = recent_samples(30, seed=9, id_offset=700_000)
    moment = predictor.history.cutoff + pd.Timedelta(hours=1)
    answers = predictor.predict(request_records(new), as_of=moment)
    assert [a.response["sample_id"] for a in answers] == new["sample_id"].tolist()  # input order
    offline = compute_features(new, trained.samples, as_of=moment).loc[new["sample_id"]]
    champion = predictor.variants[CHAMPION].scorer.model
    expected = champion.predict_proba(offline[list(FEATURE_NAMES)])[:, list(champion.classes_).index("pass")]
    got = np.array([a.response["quality_probability"] for a in answers])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    fast_input = predictor.variants[CHAMPION].scorer._fast_input
    assert fast_input is not None and fast_input.checked  # the numpy input path agreed with the pipeline's
    for answer in answers:
        r = answer.response
        assert r["model"] == {"name": "sample_quality", "version": info.champion.version, "variant": CHAMPION}
        assert r["category"] == category(r["quality_probability"]) and r["attribution"] == "tree_path"
        assert sum(r["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert all(f["contribution"] < 0 for f in r["risk_factors"])
        assert set(answer.log_row) >= {"request_id", "variant", "model_version", *FEATURE_NAMES}


def test_tree_attributions_add_up_to_the_raw_score(served) -> None:  # type: ignore[no-untyped-def]
    _, _, bundle = served
    model = SampleQualityPredictor(bundle).variants[CHAMPION].scorer.model
    features = compute_features(recent_samples(25, seed=10), pd.DataFrame(), as_of=pd.Timestamp.now(tz="UTC"))
    pipeline = model.estimator_
    matrix = pipeline[:-1].transform(features[list(FEATURE_NAMES)])
    booster = pipeline.steps[-1][1].booster_
    k = list(model.classes_).index("pass")
    raw = booster.predict(matrix, raw_score=True)[:, k]
    shap = booster.predict(matrix, pred_contrib=True).reshape(len(features), -1, len(FEATURE_NAMES) + 1)[:, k]

    paths = QualityScorer(model, {}, "tree_path")
    by_path = paths.score(features).contributions
    np.testing.assert_allclose(by_path.sum(axis=1) + paths._paths.bias, raw, atol=1e-6)
    exact = QualityScorer(model, {}, "tree_shap").score(features).contributions
    np.testing.assert_allclose(exact.sum(axis=1) + shap[:, -1], raw, atol=1e-6)
    # Two different credit rules over the same trees: they agree on which features matter most.
    top = lambda c: set(np.argsort(-np.abs(c).mean(axis=0))[:5])  # noqa: E731
    assert len(top(by_path) & top(exact)) >= 3
    with pytest.raises(ValueError, match="tree_path or tree_shap"):
        QualityScorer(model, {}, "occlusion")


def test_the_logistic_challenger_is_explained_against_the_reference(served) -> None:  # type: ignore[no-untyped-def]
    _, _, bundle = served
    scorer = SampleQualityPredictor(bundle, TrafficSplit(1.0)).variants[CHALLENGER].scorer
    assert scorer.method == "linear"  # from its coefficients, no longer by occlusion
    features = compute_features(recent_samples(10, seed=11), pd.DataFrame(), as_of=pd.Timestamp.now(tz="UTC"))
    typical = features.assign(**{k: v for k, v in scorer.reference.items() if k != "sample_type"})
    contributions = scorer.score(typical).contributions
    at_reference = [j for j, name in enumerate(FEATURE_NAMES) if name != "sample_type"]
    np.testing.assert_allclose(contributions[:, at_reference], 0.0, atol=1e-12)  # nothing to explain there
    assert np.abs(scorer.score(features).contributions).sum() > 0


def test_ab_split_is_sticky_and_reported(served) -> None:  # type: ignore[no-untyped-def]
    _, info, bundle = served
    split = TrafficSplit(0.5, salt="exp-7")
    predictor = SampleQualityPredictor(bundle, split)
    records = request_records(recent_samples(200, seed=12, id_offset=800_000))
    first = predictor.predict(records)
    variants = {a.response["sample_id"]: a.response["model"]["variant"] for a in first}
    assert set(variants.values()) == {CHAMPION, CHALLENGER}
    assert 60 < sum(v == CHALLENGER for v in variants.values()) < 140
    again = predictor.predict(list(reversed(records)))
    assert all(variants[a.response["sample_id"]] == a.response["model"]["variant"] for a in again)
    versions = {a.response["model"]["variant"]: a.response["model"]["version"] for a in first}
    assert versions == {CHAMPION: info.champion.version, CHALLENGER: info.challenger.version}
    assert TrafficSplit(0.5, salt="other").variant("TS-2026-000001") in (CHAMPION, CHALLENGER)
    with pytest.raises(ValueError):
        TrafficSplit(1.5)


def test_repeated_sample_ids_in_one_call_are_each_answered(served) -> None:  # type: ignore[no-untyped-def]
    _, _, bundle = served
    record = request_records(recent_samples(1, seed=13))[0]
    answers = SampleQualityPredictor(bundle).predict([record, {**record, "freeze_thaw_cycles": 40}])
    assert [a.response["sample_id"] for a in answers] == [record["sample_id"]] * 2
    assert answers[0].response["quality_probability"] != answers[1].response["quality_probability"]


def test_bundle_needs_a_champion_with_the_current_feature_code(tmp_path: Path, served) -> None:  # type: ignore[no-untyped-def]
    trained, info, _ = served
    empty = trained_registry(tmp_path / "empty", rows=200)
    with pytest.raises(RegistryError, match="no champion yet"):
        export_bundle(empty.registry, empty.samples, empty.features, tmp_path / "b1")
    client = trained.registry.client
    client.set_model_version_tag("sample_quality", info.champion.version, "feature_code_version", "0123456789abcdef")
    try:
        with pytest.raises(RegistryError, match="retrain before packaging"):
            export_bundle(trained.registry, trained.samples, trained.features, tmp_path / "b2")
    finally:
        client.set_model_version_tag("sample_quality", info.champion.version, "feature_code_version",
                                     info.champion.feature_code_version)  # fmt: skip


def test_a_model_file_changed_in_the_artifact_store_is_refused_before_it_is_loaded(tmp_path: Path, served) -> None:  # type: ignore[no-untyped-def]
    """The registry recorded the artifact's digest at registration; a changed pickle is not unpickled."""
    from urllib.parse import urlparse

    from tracseq_dagster.artifact_digest import ARTIFACT_DIGEST_TAG, TamperedArtifactError

    trained, info, _ = served
    client = trained.registry.client
    version = client.get_model_version("sample_quality", info.champion.version)
    assert len(version.tags[ARTIFACT_DIGEST_TAG]) == 64
    location = Path(urlparse(client.get_model_version_download_uri("sample_quality", version.version)).path)
    pickled = next(location.rglob("model.pkl"))
    original = pickled.read_bytes()
    pickled.write_bytes(original + b"\0")
    try:
        with pytest.raises(TamperedArtifactError, match=f"sample_quality v{info.champion.version}: .*changed after registration"):
            export_bundle(trained.registry, trained.samples, trained.features, tmp_path / "tampered")
    finally:
        pickled.write_bytes(original)
    assert export_bundle(trained.registry, trained.samples, trained.features, tmp_path / "restored").tag == info.tag


# -- advice ------------------------------------------------------------------------------------------


def test_categories_and_recommendations_use_the_samples_own_values() -> None:
    assert [category(p) for p in (0.95, 0.70, 0.69, 0.40, 0.39)] == ["high", "high", "medium", "medium", "low"]
    contributions = np.zeros(len(FEATURE_NAMES))
    contributions[FEATURE_NAMES.index("freeze_thaw_cycles")] = -0.8
    contributions[FEATURE_NAMES.index("storage_temp_deviation_c")] = -0.5
    contributions[FEATURE_NAMES.index("purity_score")] = 0.3  # protective: not a risk factor
    features = {"freeze_thaw_cycles": 12.0, "storage_temp_deviation_c": 18.0, "purity_score": 0.9}
    factors = risk_factors(contributions, features)
    assert [f.feature for f in factors] == ["freeze_thaw_cycles", "storage_temp_deviation_c"]
    record = {"freeze_thaw_cycles": 12, "storage_location": "FRZ-07/R1/B2/C3", "storage_temp_c": -2.0, "sample_type": "DNA"}
    advice = recommendations(factors, record, features)
    assert "12 recorded" in advice[0] and "FRZ-07" in advice[1]
    delay = risk_factors(np.where(np.arange(len(FEATURE_NAMES)) == FEATURE_NAMES.index("processing_delay_hours"), -1.0, 0.0),
                         {"processing_delay_hours": 5238.364})  # fmt: skip
    assert recommendations(delay, {}, {"processing_delay_hours": 5238.364}) == [
        "Extract promptly: 5,238 h between receipt and extraction."
    ]


# -- cache, stores, batching ---------------------------------------------------------------------


def test_cache_keys_change_with_the_model_and_the_lru_is_bounded() -> None:
    record = {"sample_id": "TS-2026-000001", "volume_ul": 20.0}
    assert cache_key("v1-aaaa", record) == cache_key("v1-aaaa", dict(reversed(record.items())))
    assert cache_key("v1-aaaa", record) != cache_key("v2-bbbb", record)
    cache = InProcessCache(max_entries=2)
    for key in ("a", "b", "c"):
        cache.put(key, {"k": key, "risk_factors": [{"feature": "x", "contribution": -0.1}]})
    assert cache.get("a") is None and cache.get("c") == {"k": "c", "risk_factors": [{"feature": "x", "contribution": -0.1}]}
    cache.get("c")["k"] = "changed"  # a caller's copy: the cached answer stays as it was
    assert cache.get("c")["k"] == "c"


def test_cached_answers_are_not_walked_by_the_garbage_collector() -> None:
    """A full cache adds nothing for Python's cyclic GC to traverse (its pauses stall every request)."""
    import gc

    cache = InProcessCache(max_entries=5_000)
    answer = {"quality_probability": 0.5, "risk_factors": [{"feature": f"f{i}", "contribution": -0.1} for i in range(5)],
              "recommendations": ["re-extract"], "class_probabilities": {"pass": 0.5, "fail": 0.5}}  # fmt: skip
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5_000):
        cache.put(f"k{i}", {**answer, "request_id": str(i)})
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # 5,000 answers, not 5,000 × 10 tracked objects


def test_redis_cache_round_trip() -> None:
    prefix = f"tracseq-test-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        cache = RedisCache(REDIS_URL, prefix=prefix + "prediction:", ttl_s=60)
        cache.put("k1", {"quality_probability": 0.5})
        assert cache.get("k1") == {"quality_probability": 0.5} and cache.get("k2") is None
    finally:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


def test_micro_batcher_batches_concurrent_requests_and_reports_errors() -> None:
    def handler(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return [i * 10 for i in items]

    async def scenario() -> tuple[list[int], MicroBatcher[int, int]]:
        batcher: MicroBatcher[int, int] = MicroBatcher(handler, max_batch=16, max_wait_ms=20)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit(-1)
        return list(results), batcher

    results, batcher = asyncio.run(scenario())
    assert results == [i * 10 for i in range(40)]
    assert batcher.items == 40 and batcher.batches <= 5  # 40 requests, batches of up to 16


def test_micro_batcher_counts_the_wait_from_the_first_request_of_a_batch() -> None:
    """Requests that queued up during a slow batch are not made to wait ``max_wait_ms`` again.

    On a fake clock the first batch takes a whole wait; the backlog that arrived meanwhile is
    then due and leaves at once. Were the wait counted from the dequeue, the backlog would sit
    through the real 60 s wait and the test would time out: no wall-clock bound to flake.
    """
    import threading

    now = [0.0]
    release = threading.Event()
    batches: list[list[int]] = []

    def handler(items: list[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            assert release.wait(30)  # the first batch runs while the backlog arrives ...
            now[0] += 60.0  # ... and takes as long as the whole wait
        return items

    async def scenario() -> None:
        batcher: MicroBatcher[int, int] = MicroBatcher(handler, max_batch=4, max_wait_ms=60_000, clock=lambda: now[0])
        first = [asyncio.ensure_future(batcher.submit(i)) for i in range(4)]  # a full batch leaves at once
        while not batches:
            await asyncio.sleep(0.001)
        backlog = [asyncio.ensure_future(batcher.submit(i)) for i in range(4, 6)]  # arrive at t=0
        while batcher._queue is None or batcher._queue.qsize() < 2:
            await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(asyncio.gather(*first, *backlog), timeout=30)
        assert batcher.batches == 2 and batcher.items == 6

    asyncio.run(scenario())
    assert batches == [[0, 1, 2, 3], [4, 5]]


def test_repeated_records_are_scored_once_and_conflicting_repeats_refused(served) -> None:  # type: ignore[no-untyped-def]
    from tracseq_dagster.serving.request_schema import BatchRequest

    _, _, bundle = served
    record = request_records(recent_samples(1, seed=15))[0]
    predictor = SampleQualityPredictor(bundle)
    answers = predictor.predict([record] * 500, request_ids=[f"r{i}" for i in range(500)])
    assert len({a.response["quality_probability"] for a in answers}) == 1
    assert [a.response["request_id"] for a in answers[:3]] == ["r0", "r1", "r2"]
    assert BatchRequest.model_validate({"samples": [record, record]})
    with pytest.raises(ValidationError, match="appears earlier with other values"):
        BatchRequest.model_validate({"samples": [record, {**record, "volume_ul": 1.0}]})


# -- the columnar batch contract ------------------------------------------------------------------


def _table_answers(table: pa.Table) -> list[dict]:
    """A columnar answer in /batch_predict's terms, for comparison."""
    out = []
    for row in table.to_pylist():
        factors = [(row[f"risk_factor_{i}"], row[f"risk_contribution_{i}"]) for i in range(1, 6) if row[f"risk_factor_{i}"]]
        out.append({"sample_id": row["sample_id"], "quality_probability": row["quality_probability"], "category": row["category"],
                    "predicted_status": row["predicted_status"], "variant": row["variant"], "version": row["model_version"],
                    "factors": factors, "recommendations": row.get("recommendations"),
                    "class_probabilities": {k[2:]: v for k, v in row.items() if k.startswith("p_")}})  # fmt: skip
    return out


def test_columnar_answers_equal_batch_predict_in_both_formats(served) -> None:  # type: ignore[no-untyped-def]
    _, _, bundle = served
    predictor = SampleQualityPredictor(bundle, TrafficSplit(0.4, salt="exp-c"))
    samples = recent_samples(120, seed=16, id_offset=900_000)
    records = request_records(samples)
    records.append(dict(records[7]))  # the same record twice is answered twice, as /batch_predict does
    moment = predictor.history.cutoff + pd.Timedelta(hours=1)
    expected = [a.response for a in predictor.predict(records, as_of=moment)]
    # JSON-like text columns (ISO timestamps as strings) through Arrow IPC; typed columns through Parquet.
    typed = pa.Table.from_pandas(pd.concat([samples, samples.iloc[[7]]]).drop(columns=["qc_status"]), preserve_index=False)
    for kind, table in ((columnar.ARROW_STREAM, pa.Table.from_pylist(records)), (columnar.PARQUET, typed)):
        valid = columnar.validate_table(columnar.read_table(columnar.write_table(table, kind), kind))
        answer = predictor.predict_table(valid, as_of=moment, texts=True).table("b1")
        assert answer["request_id"].to_pylist()[:2] == ["b1-0", "b1-1"] and answer.num_rows == len(records)
        for want, got in zip(expected, _table_answers(answer), strict=True):
            probabilities = got.pop("class_probabilities")
            assert got == {"sample_id": want["sample_id"], "quality_probability": want["quality_probability"],
                           "category": want["category"], "predicted_status": want["predicted_status"],
                           "variant": want["model"]["variant"], "version": want["model"]["version"],
                           "factors": [(f["feature"], f["contribution"]) for f in want["risk_factors"]],
                           "recommendations": want["recommendations"]}  # fmt: skip
            assert probabilities == pytest.approx(want["class_probabilities"], abs=1e-6)
    assert {a["model"]["variant"] for a in expected} == {CHAMPION, CHALLENGER}  # both variants really answered
    without_text = predictor.predict_table(valid, as_of=moment).table("b2")
    assert "recommendations" not in without_text.column_names


def test_columnar_bad_rows_are_named_by_row_and_field(served) -> None:  # type: ignore[no-untyped-def]
    records = request_records(recent_samples(6, seed=17, id_offset=910_000))
    records[1]["storage_temp_c"] = 120.0
    records[3]["sample_type"] = "plasma"
    records[5] = {**records[0], "freeze_thaw_cycles": 40}  # the same sample_id with other values
    table = pa.Table.from_pylist(records)
    volumes = [str(r["volume_ul"]) for r in records]
    volumes[4] = "lots"  # a text column where a number belongs
    table = table.set_column(table.schema.get_field_index("volume_ul"), "volume_ul", pa.array(volumes))
    with pytest.raises(columnar.ColumnarError) as error:
        columnar.validate_table(table)
    found = {(tuple(d["loc"]), d["rule"]) for d in error.value.detail}
    # The ingest's rules, all of them: a DIN on an unknown sample type breaks din_only_dna as well.
    assert found == {(("samples", 1, "storage_temp_c"), "range:storage_temp_c"), (("samples", 3, "sample_type"), "enum:sample_type"),
                     (("samples", 3, "din", "sample_type"), "din_only_dna"), (("samples", 4, "volume_ul"), "type:volume_ul"),
                     (("samples", 5, "sample_id"), "unique:sample_id")}  # fmt: skip
    assert error.value.count == 5 and "120.0 is above the maximum 40" in str(error.value.payload())
    with pytest.raises(columnar.ColumnarError) as missing:
        columnar.validate_table(pa.Table.from_pylist(records[:1]).drop_columns(["site", "received_ts"]))
    assert {tuple(d["loc"]) for d in missing.value.detail} == {("samples", "site"), ("samples", "received_ts")}
    with pytest.raises(columnar.ColumnarError, match="no rows"):
        columnar.validate_table(pa.Table.from_pylist(records[:1]).slice(0, 0))
    with pytest.raises(columnar.ColumnarError, match="not a readable"):
        columnar.read_table(b"PAR1 not really", columnar.PARQUET)
    assert columnar.media_type("application/vnd.apache.parquet; charset=binary") == columnar.PARQUET
    assert columnar.media_type("application/json") is None


def test_columnar_batches_are_logged_in_bulk_beside_single_rows(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, bundle = served
    predictor = SampleQualityPredictor(bundle, TrafficSplit(0.5, salt="exp-c"))
    records = request_records(recent_samples(50, seed=18, id_offset=920_000))
    answers = predictor.predict_table(columnar.validate_table(pa.Table.from_pylist(records)))
    table = answers.table("batch9")
    writer = BackgroundLogWriter(ParquetPredictionLog(tmp_path / "log"), flush_interval_s=60)
    single = predictor.predict(records[:1])[0]
    writer.submit([single.log_row])
    writer.submit(answers.log_frame("batch9", latency_ms=25.0))
    writer.close()
    logged = ParquetPredictionLog(tmp_path / "log").read().set_index("request_id")
    assert len(logged) == 51 and writer.written == 51
    rows = logged.loc[table["request_id"].to_pylist()]
    assert rows["variant"].tolist() == table["variant"].to_pylist()
    assert rows["sample_id"].tolist() == [r["sample_id"] for r in records]
    np.testing.assert_allclose(rows["quality_probability"], table["quality_probability"].to_numpy(), atol=1e-6)
    assert rows["latency_ms"].iloc[0] == pytest.approx(0.5) and rows["freeze_thaw_cycles"].notna().all()
    assert logged.loc[single.response["request_id"], "sample_id"] == records[0]["sample_id"]


def test_category_and_log_follow_the_answered_probability_at_a_threshold(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """P(pass) 0.6999996 is answered as 0.7: "high" (P >= 0.70) in the JSON answer, the table and both logs."""
    import dataclasses

    from tracseq_dagster.serving.scoring import PASS

    _, _, bundle = served
    predictor = SampleQualityPredictor(bundle)
    scorer = predictor.variants[CHAMPION].scorer
    score = scorer.score

    def on_the_edge(features: pd.DataFrame):  # type: ignore[no-untyped-def]
        scores = score(features)
        probabilities = np.full_like(scores.probabilities, (1 - 0.6999996) / (len(scores.classes) - 1))
        probabilities[:, scores.classes.index(PASS)] = 0.6999996
        return dataclasses.replace(scores, probabilities=probabilities)

    monkeypatch.setattr(scorer, "score", on_the_edge)
    records = request_records(recent_samples(3, seed=23, id_offset=930_000))
    single = predictor.predict(records[:1])[0]
    assert single.response["quality_probability"] == 0.7 and single.response["category"] == "high"
    assert single.log_row["quality_probability"] == 0.7 and single.log_row["category"] == "high"
    answers = predictor.predict_table(columnar.validate_table(pa.Table.from_pylist(records)))
    table = answers.table("edge")
    assert table["quality_probability"].to_pylist() == [0.7] * 3 and table["category"].to_pylist() == ["high"] * 3
    log = answers.log_frame("edge", latency_ms=1.0)
    assert log["quality_probability"].tolist() == [0.7] * 3 and log["category"].tolist() == ["high"] * 3


def test_compiled_forest_equals_lightgbm_with_missing_values(served) -> None:  # type: ignore[no-untyped-def]
    _, _, bundle = served
    scorer = SampleQualityPredictor(bundle).variants[CHAMPION].scorer
    assert scorer._forest is not None
    features = compute_features(recent_samples(300, seed=19), pd.DataFrame(), as_of=pd.Timestamp.now(tz="UTC"))
    features.iloc[::3, features.columns.get_loc("integrity_score")] = np.nan  # missing values take their default branch
    features.iloc[::5, features.columns.get_loc("sample_type")] = None
    matrix = scorer._booster_matrix(features[list(FEATURE_NAMES)])
    raw, credit = scorer._forest.raw_and_credit(matrix)
    booster = scorer._estimator.booster_
    np.testing.assert_array_equal(raw, np.asarray(booster.predict(matrix, raw_score=True)).reshape(raw.shape))
    leaves = booster.predict(matrix, pred_leaf=True)
    np.testing.assert_array_equal(scorer._paths.sign * credit, scorer._paths.contributions(leaves))
    many_raw, many_credit = scorer._forest.raw_and_credit(np.tile(matrix, (4, 1)))  # 1,200 rows: the parallel kernel
    np.testing.assert_array_equal(many_raw, np.tile(raw, (4, 1)))
    np.testing.assert_array_equal(many_credit, np.tile(credit, (4, 1)))
    scores = scorer.score(features)
    assert scorer._forest_checked  # the service's path is the compiled one, checked against LightGBM
    np.testing.assert_allclose(scores.probabilities, booster.predict(matrix), atol=1e-12)
    forest = scorer._forest  # values exactly on a split's threshold go left, as in LightGBM
    feature = int(np.argmax(forest.cut_count))
    matrix[::2, feature] = np.resize(forest.cuts[feature, : forest.cut_count[feature]], len(matrix[::2]))
    raw, _ = forest.raw_and_credit(matrix)
    np.testing.assert_array_equal(raw, np.asarray(booster.predict(matrix, raw_score=True)).reshape(raw.shape))


@pytest.fixture(scope="module")
def cold_bundle(served, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The bundle as packed before warm-up rows existed: its scorers compile and check on their first batch."""
    cold = tmp_path_factory.mktemp("cold") / "bundle"
    shutil.copytree(served[2], cold)
    (cold / WARM_UP_FILE).unlink()
    return cold


def test_the_bundle_warms_every_kernel_up_at_load_on_real_training_rows(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Compiling a kernel mid-traffic stalled a worker for seconds (a 1.7 s p99): the predictor
    scores the packed training rows at load, in the sizes that select each kernel, and runs the
    one-time checks there; the traffic then finds everything compiled and checked."""
    trained, _, bundle = served
    rows = pd.read_parquet(bundle / WARM_UP_FILE)
    assert list(rows.columns) == list(FEATURE_NAMES) and len(rows) == min(len(trained.features), WARM_UP_ROWS)
    assert len(rows.drop_duplicates()) > len(rows) // 2  # real, varied rows: the checks see many paths
    predictor = SampleQualityPredictor(bundle)
    scorer = predictor.variants[CHAMPION].scorer
    assert predictor.warm_up_s > 0 and scorer._forest_checked and scorer._fast_input is not None and scorer._fast_input.checked
    forest = scorer._forest
    taken = ([compiled_trees._walk_serial, leaf_bitvectors._score_serial, leaf_bitvectors._score] if forest.bitvectors is not None
             else [compiled_trees._walk_serial, compiled_trees._walk])  # fmt: skip
    assert all(kernel.signatures for kernel in taken)  # compiled (or loaded from numba's cache) in this process
    booster = scorer._estimator.booster_
    monkeypatch.setattr(booster, "predict", lambda *a, **k: pytest.fail("checked again on a real batch"))
    features = compute_features(recent_samples(300, seed=42), pd.DataFrame(), as_of=pd.Timestamp.now(tz="UTC"))
    assert len(scorer.score(features).probabilities) == 300


def test_a_large_first_batch_is_checked_against_lightgbm_on_its_first_rows_only(cold_bundle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The one-time checks of the fast paths read CHECKED_ROWS rows, not a whole first batch
    (LightGBM's own walk of 100,000 rows took 7.5 s of CPU)."""
    scorer = SampleQualityPredictor(cold_bundle).variants[CHAMPION].scorer
    booster = scorer._estimator.booster_
    original, seen = booster.predict, []
    monkeypatch.setattr(booster, "predict", lambda data, **kwargs: seen.append(len(data)) or original(data, **kwargs))
    features = compute_features(recent_samples(2500, seed=41), pd.DataFrame(), as_of=pd.Timestamp.now(tz="UTC"))
    scores = scorer.score(features)
    assert scorer._forest_checked and scorer._fast_input is not None and scorer._fast_input.checked
    assert seen == [CHECKED_ROWS] and len(scores.probabilities) == 2500


def test_small_batches_walk_the_trees_without_starting_a_thread_pool(cold_bundle) -> None:  # type: ignore[no-untyped-def]
    """A micro-batch stays on the calling thread: numba's OpenMP workers spin for milliseconds after each parallel call.

    In a fresh interpreter, after this session has compiled and cached both kernels (the
    serial twin once loaded the parallel code from numba's cache, which is keyed by name).
    """
    bundle = cold_bundle  # a warm bundle starts the pool at load, once, for the batch routes
    code = f"""
import numpy as np
import numba.np.ufunc.parallel as threading_layer
from tracseq_dagster.serving.predictor import SampleQualityPredictor
forest = SampleQualityPredictor({str(bundle)!r}).variants["champion"].scorer._forest
forest.raw_and_credit(np.zeros((64, forest.credit.shape[1])))
print("after a micro-batch", threading_layer._is_initialized)
forest.raw_and_credit(np.zeros((2048, forest.credit.shape[1])))
print("after a large batch", threading_layer._is_initialized)
"""
    forest = SampleQualityPredictor(bundle).variants[CHAMPION].scorer._forest
    forest.raw_and_credit(np.zeros((2048, forest.credit.shape[1])))  # both kernels compiled and cached here
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.split("\n")[:2] == ["after a micro-batch False", "after a large batch True"], (
        result.stdout + result.stderr
    )


def test_columnar_answers_are_cached_by_body_within_a_byte_budget() -> None:
    assert blob_key("v1", b"abc", "x") != blob_key("v2", b"abc", "x") != blob_key("v1", b"abd", "x")
    cache = InProcessCache(max_blob_bytes=10)
    cache.put_blob("a", b"12345")
    cache.put_blob("b", b"123456")  # over budget: the oldest goes
    cache.put_blob("c", b"x" * 11)  # larger than the budget: not kept
    assert cache.get_blob("a") is None and cache.get_blob("b") == b"123456" and cache.get_blob("c") is None
