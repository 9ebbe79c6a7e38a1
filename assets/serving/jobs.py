"""Jobs of the serving domain."""

import dagster as dg

# After a promotion: export the champion (and challenger) with the history and build the Bento.
package_bento_job = dg.define_asset_job(
    "package_bento",
    selection=dg.AssetSelection.assets("prediction_bento"),
    description="Package every catalog model's champion (and challenger) as one Bento.",
)
