"""Sensors and schedules of the code location, one concept per module:

* ``landing``: new LIMS exports and lab documents become partitions and runs;
* ``automation``: declarative automation carries them through features and the index;
* ``retraining``: drift, new labels or the weekly schedule retrain the model.
"""

from tracseq_dagster.sensors.automation import documents_automation_sensor, features_automation_sensor
from tracseq_dagster.sensors.landing import documents_sensor, lab_export_sensor
from tracseq_dagster.sensors.retraining import DRIFT_CHECK, retraining_schedule, retraining_sensor

__all__ = [
    "DRIFT_CHECK",
    "documents_automation_sensor",
    "documents_sensor",
    "features_automation_sensor",
    "lab_export_sensor",
    "retraining_schedule",
    "retraining_sensor",
]
