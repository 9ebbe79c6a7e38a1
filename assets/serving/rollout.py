"""The rollout sensor: a champion that moved in the registry, or new SOPs, packaged and served without a restart.

Whatever moved the alias (the gate, an approval, the management API, ``tracseq model rollback``),
this sensor compares every catalog model's champion with the champions of the model announced to
the running services (:mod:`tracseq_dagster.serving.rollout`) and runs ``package_bento`` when they
differ. It also compares the document index's current version with the one the announced build
packed its SOP citations from (``document_index`` materialized a new version: the citations are
stale). The build announces its model; every worker switches to it by itself, without dropping a
request. One run per wanted state (the run key: champions and index version), none while a
packaging run is under way. Without a document index nothing about documents is asked.
"""

import hashlib

import dagster as dg

from assets.serving.jobs import package_bento_job
from resources import EmbedderResource, LanceDBResource, MLflowResource
from tracseq_dagster import settings
from tracseq_dagster.control.champion_watch import registry_champions
from tracseq_dagster.documents.citation_pack import indexed_version
from tracseq_dagster.models import catalog
from tracseq_dagster.serving.rollout import (
    announced,
    announced_champions,
    announced_document_index_version,
    documents_rollout_needed,
    rollout_needed,
)

ROLLOUT_TAG = "tracseq/rollout"
_BUSY = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dg.sensor(
    job=package_bento_job,
    minimum_interval_seconds=settings.rollout_sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Packages and announces a new Bento when a catalog model's champion moved (promotion, approval, "
    "rollback) or the document index has a new version (the SOP citations); the running prediction services "
    "switch to it without a restart.",
)
def champion_rollout_sensor(
    context: dg.SensorEvaluationContext, mlflow_tracking: MLflowResource, lancedb: LanceDBResource, embedder: EmbedderResource
) -> dg.SensorResult:
    desired = registry_champions(mlflow_tracking.client(), list(catalog()))()
    moves = rollout_needed(desired, announced_champions())
    index_version = indexed_version(lancedb.uri, embedder.spec)
    documents = documents_rollout_needed(index_version, announced_document_index_version(), announced_tag=announced())
    if documents is not None:
        moves.append(documents)
    if not moves:
        return dg.SensorResult(skip_reason="the announced Bento serves every champion and the current SOP citations")
    busy = context.instance.get_runs(dg.RunsFilter(job_name=package_bento_job.name, statuses=_BUSY), limit=1)
    if busy:
        return dg.SensorResult(skip_reason=f"package_bento is already running ({busy[0].run_id[:8]})")
    wanted = ",".join(f"{m}={v}" for m, v in sorted(desired.items()))
    if index_version is not None:  # without documents the key is what it always was
        wanted += f",documents={index_version}"
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=hashlib.sha256(wanted.encode()).hexdigest()[:16], tags={ROLLOUT_TAG: "; ".join(moves)[:1000]})
        ]
    )
