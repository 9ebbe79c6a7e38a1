"""The entities of the lab that features describe: a sample, and what its history is grouped by."""

from feast import Entity, ValueType

sample = Entity(
    name="sample",
    join_keys=["sample_id"],
    value_type=ValueType.STRING,
    description="A sample received by the lab (export contract sample_id, TS-YYYY-NNNNNN).",
)
operator = Entity(
    name="operator",
    join_keys=["operator_id"],
    value_type=ValueType.STRING,
    description="The lab operator who handled the sample (operator_id).",
)
site = Entity(
    name="site", join_keys=["site"], value_type=ValueType.STRING, description="The collection site that sent the sample."
)
freezer = Entity(
    name="freezer",
    join_keys=["freezer"],
    value_type=ValueType.STRING,
    description="A freezer: the first segment of storage_location (FRZ-03 of FRZ-03/R2/B14/A7).",
)
instrument = Entity(
    name="instrument",
    join_keys=["instrument_id"],
    value_type=ValueType.STRING,
    description="A sequencer (instrument_id of the run export, e.g. SEQ-03).",
)
freezer_day = Entity(
    name="freezer_day",
    join_keys=["freezer_day"],
    value_type=ValueType.STRING,
    description="One freezer on one UTC day (FRZ-03/2025-05-01): the rows of freezer_excursion_risk.",
)
run = Entity(
    name="run",
    join_keys=["run_id"],
    value_type=ValueType.STRING,
    description="A sequencing run (run_id, RUN-YYYY-NNNNN); with a sample, one library of the run.",
)

ENTITIES = (sample, operator, site, freezer, instrument, run, freezer_day)

#: The entity of each join key (a model's entity columns name its feature view's entities).
BY_JOIN_KEY = {e.join_key: e for e in ENTITIES}
