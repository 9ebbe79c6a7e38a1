"""The rollout sensor: a champion that moved in the registry is packaged and served without a restart.

Whatever moved the alias (the gate, an approval, the management API, ``tracseq model rollback``),
this sensor compares every catalog model's champion with the champions of the model announced to
the running services (:mod:`tracseq_dagster.serving.rollout`) and runs ``package_bento`` when they
differ. The build announces its model; every worker switches to it by itself, without dropping a
request. One run per wanted state (the run key), none while a packaging run is under way.
"""

import hashlib

import dagster as dg

from assets.serving.jobs import package_bento_job
from resources import MLflowResource
from tracseq_dagster import settings
from tracseq_dagster.control.champion_watch import registry_champions
from tracseq_dagster.models import catalog
from tracseq_dagster.serving.rollout import announced_champions, rollout_needed

ROLLOUT_TAG = "tracseq/rollout"
_BUSY = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dg.sensor(
    job=package_bento_job,
    minimum_interval_seconds=settings.rollout_sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Packages and announces a new Bento when a catalog model's champion moved (promotion, approval, "
    "rollback); the running prediction services switch to it without a restart.",
)
def champion_rollout_sensor(context: dg.SensorEvaluationContext, mlflow_tracking: MLflowResource) -> dg.SensorResult:
    desired = registry_champions(mlflow_tracking.client(), list(catalog()))()
    moves = rollout_needed(desired, announced_champions())
    if not moves:
        return dg.SensorResult(skip_reason="the announced Bento serves every champion")
    busy = context.instance.get_runs(dg.RunsFilter(job_name=package_bento_job.name, statuses=_BUSY), limit=1)
    if busy:
        return dg.SensorResult(skip_reason=f"package_bento is already running ({busy[0].run_id[:8]})")
    wanted = ",".join(f"{m}={v}" for m, v in sorted(desired.items()))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=hashlib.sha256(wanted.encode()).hexdigest()[:16], tags={ROLLOUT_TAG: "; ".join(moves)[:1000]})
        ]
    )
