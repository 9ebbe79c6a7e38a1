"""Jobs of the serving domain (beside assets/serving.py until it becomes a package)."""

import dagster as dg

# After a promotion: export the champion (and challenger) with the history and build the Bento.
package_bento_job = dg.define_asset_job(
    "package_bento",
    selection=dg.AssetSelection.assets("sample_quality_bento"),
    description="Package the registry's champion (and challenger) as the sample_quality Bento.",
)
