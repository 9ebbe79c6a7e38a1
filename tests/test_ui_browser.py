"""The operator's view: the Dagster UI of this project in a real Chromium.

A real `dagster-webserver` on the project's workspace.yaml, with PostgreSQL storage (the
production dagster.yaml, in a database of its own) and a temporary DAGSTER_HOME, looked at
and clicked through in Debian's headless Chromium via Playwright:

1. the global asset lineage, every group expanded, shows every asset of the code location
   (the keys are read from ``tracseq_dagster.definitions``, not listed here);
2. an export dropped into the landing folder is materialized by clicking (the lab_exports
   group's context menu, its partition, launch), the run page turns to Success, and each
   asset's Checks tab shows its checks' results; the instance confirms all of it.

Screenshots land in test-artifacts/ui_browser/ (or $TRACSEQ_TEST_ARTIFACTS); the path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from conftest import fresh_postgres_database
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster_helpers import latest_materialization
from dagster_ui import REPO, Webserver, artifacts_dir, chromium_page, dagster_webserver, write_instance_config

from assets.lab_exports.partitions import lab_export_partitions
from tracseq_dagster import landing
from tracseq_dagster.definitions import defs

pytestmark = pytest.mark.slow

# 2 good rows and 6 that each break one contract rule: the raw-rows check (warning) fails,
# the blocking check on the accepted rows passes, and the run succeeds.
EXPORT = REPO / "examples" / "exports" / "lims_manual_entries.csv"
EXPECTED_CHECKS = {  # (asset, check): passed
    ("raw_lab_exports", "raw_rows_meet_contract"): False,
    ("validated_samples", "accepted_rows_meet_contract"): True,
}
GROUP = "lab_exports"
# Wide enough that the whole expanded lineage fits at a zoom where nodes show full names
# (the UI draws "minimal" nodes with middle-truncated names below 60 % zoom).
TALL_VIEWPORT = (3000, 6000)  # every group's names at a readable zoom (offscreen nodes are not drawn)
GRAPH_VIEWPORT = (3000, 2600)  # seven domain groups; the Feast assets made the features group taller
TIMEOUT_MS = 120_000


@dataclass
class UI:
    web: Webserver
    home: Path
    pg_url: str
    partition: str
    shots: Path


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    from playwright.sync_api import expect

    # Waits are explicit conditions; on a loaded 2-core machine the UI can take a while to get there.
    expect.set_options(timeout=TIMEOUT_MS)
    root = tmp_path_factory.mktemp("ui")
    home, landing_dir = root / "dagster_home", root / "landing"
    write_instance_config(home)
    landing_dir.mkdir()
    dropped = landing_dir / EXPORT.name
    shutil.copy(EXPORT, dropped)
    partition = landing.content_hash(str(dropped))
    with fresh_postgres_database() as pg_url:
        # Only this test's folders: nothing inherited may point the code location elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACSEQ_", "MLFLOW_", "DAGSTER_"))}
        env |= {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": pg_url,
            "TRACSEQ_DATA_DIR": str(root / "data"),
            "TRACSEQ_LANDING_URL": str(landing_dir),
            "TRACSEQ_LAKE_DIR": str(root / "lake"),
        }
        # What the sensor would do on its tick (no daemon runs here): register the partition.
        with _instance(home, pg_url) as instance:
            instance.add_dynamic_partitions(lab_export_partitions.name, [partition])
        with dagster_webserver(env, root / "webserver.log") as web:
            shots = artifacts_dir("ui_browser")
            print(f"\nDagster UI at {web.url}; screenshots in {shots}; webserver log {web.log}")
            yield UI(web, home, pg_url, partition, shots)


@contextmanager
def _instance(home: Path, pg_url: str) -> Iterator[dg.DagsterInstance]:
    """The webserver's instance, read from this process (dagster.yaml takes the URL from the environment)."""
    previous = os.environ.get("DAGSTER_PG_URL")
    os.environ["DAGSTER_PG_URL"] = pg_url
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_PG_URL", None)
        else:
            os.environ["DAGSTER_PG_URL"] = previous


def _dismiss_onboarding(page) -> None:  # type: ignore[no-untyped-def]
    """Mark Dagster's 'Join the community' dialog as dismissed, as the UI stores it after Skip.

    A fresh profile would get it a second after the first page load, over whatever is being
    clicked at that moment (an open menu closes under it).
    """
    page.context.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")


def _open_expanded_lineage(page, url: str, *, zoom_out: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Global asset lineage with every group expanded, zoomed to fit (expansion lives in the URL)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/asset-groups")
    # The graph has rendered (collapsed groups) before its toolbar buttons exist.
    expect(page.locator("svg foreignObject").get_by_text(GROUP, exact=True)).to_be_visible()
    page.get_by_text("Hide navigation").click()  # room for the graph (remembered by the profile)
    # The graph's settings button (bottom right; the navigation's comes first in the page).
    page.locator("button:has([aria-label=settings])").last.click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    expect(page).to_have_url(re.compile(r"expanded="))
    page.goto(page.url)  # re-open: the viewport zooms to fit the expanded layout
    expect(page.locator("svg foreignObject").get_by_text("raw_lab_exports", exact=True)).to_be_visible()
    # Eight groups are taller than the fit leaves room for: zoom out until every name is inside the window.
    names = page.locator("svg foreignObject").get_by_text(re.compile(r"^[a-z0-9_]+$"))
    for _ in range(8 if zoom_out else 0):
        if len(_names_drawn_in_window(page)) >= len({n.strip() for n in names.all_inner_texts()}):
            break
        page.locator("button:has([aria-label=zoom_out])").last.click()
        page.wait_for_timeout(300)  # the zoom animates


def _names_drawn_in_window(page) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Identifiers drawn on the graph (asset, group and kind names), with their boxes, if inside the window."""
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    names = {}
    # Asset nodes are HTML inside the SVG's foreignObjects; the sidebar tree is not.
    for node in page.locator("svg foreignObject").get_by_text(re.compile(r"^[a-z0-9_]+$")).all():
        box = node.bounding_box()
        if box and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= height:
            names[node.inner_text().strip()] = box
    return names


def test_materialize_from_the_ui_run_succeeds_and_checks_show_their_results(ui: UI, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    with chromium_page(tmp_path / "chromium", viewport=GRAPH_VIEWPORT) as page:
        page.set_default_timeout(TIMEOUT_MS)
        _dismiss_onboarding(page)
        _open_expanded_lineage(page, ui.web.url)

        # The operator right-clicks the lab_exports group and materializes its assets. Zoomed out to fit
        # eight groups, the group's label can sit under the graph's top bar, which then takes a real
        # click; the right-click is dispatched on the label itself (the event the UI listens for).
        page.get_by_text(GROUP, exact=True).last.dispatch_event("contextmenu", {"button": 2})
        page.get_by_role("menuitem", name="Materialize assets").click()
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
        expect(dialog.get_by_text("Launch runs to materialize 3 assets")).to_be_visible()
        dialog.get_by_text("Select a partition or create one").click()
        page.get_by_text(ui.partition, exact=True).filter(visible=True).click()
        page.keyboard.press("Escape")  # close the partition picker, not the dialog
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()

        page.screenshot(path=ui.shots / "launch-dialog.png")
        dialog.get_by_role("button", name="Launch 1 run").click()
        expect(dialog).to_be_hidden()

        # The graph links the running materialization to its run; follow it.
        run_link = page.locator("a[href^='/runs/']").first
        run_path = run_link.get_attribute("href")
        run_id = run_path.rsplit("/", 1)[-1]
        page.goto(f"{ui.web.url}{run_path}")
        expect(page.get_by_text(f"partition: {ui.partition}")).to_be_visible()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=240_000)
        expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
        page.screenshot(path=ui.shots / "run-succeeded.png")
        print(f"run {run_id} launched from the UI and shown as succeeded after {time.monotonic() - started:.0f} s")

        shown, shown_partitions = {}, {}
        for asset, check in EXPECTED_CHECKS:
            page.goto(f"{ui.web.url}/assets/{asset}?view=checks")
            # The asset's list of checks: name and the state of the latest execution.
            row = page.get_by_title(check, exact=True).first.locator("xpath=..")
            expect(row).to_contain_text(re.compile("Succeeded|Failed"))
            listed = re.search("Succeeded|Failed", row.inner_text()).group(0)
            # The selected check's latest execution: its evaluation result and partition.
            result = page.get_by_text("Evaluation result", exact=True).locator("xpath=..")
            expect(result).to_contain_text(re.compile("Passed|Failed"))
            evaluation = re.search("Passed|Failed", result.inner_text()).group(0)
            partition = page.get_by_text("Partition", exact=True).locator("xpath=..").inner_text()
            shown[(asset, check)] = (listed, evaluation)
            shown_partitions[(asset, check)] = partition.removeprefix("Partition").strip()
            page.screenshot(path=ui.shots / f"checks-{asset}.png")

    assert shown == {key: ("Succeeded", "Passed") if passed else ("Failed", "Failed") for key, passed in EXPECTED_CHECKS.items()}

    # The instance agrees with what the UI showed.
    with _instance(ui.home, ui.pg_url) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == ui.partition
        assert {key.to_user_string() for key in run.asset_selection} == {
            "raw_lab_exports",
            "validated_samples",
            "quarantined_samples",
        }
        check_keys = [
            key
            for key in defs.resolve_asset_graph().asset_check_keys
            if key.asset_key.to_user_string() in {a for a, _ in EXPECTED_CHECKS}
        ]
        assert {(k.asset_key.to_user_string(), k.name) for k in check_keys} == set(EXPECTED_CHECKS)
        records = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
        recorded = {}
        for key, record in records.items():
            name = (key.asset_key.to_user_string(), key.name)
            assert record.run_id == run_id
            recorded[name] = (record.status, record.event.asset_check_evaluation.passed)
            # The UI shows the partition the evaluation was recorded with, or a dash.
            assert shown_partitions[name] == (record.partition or "—"), (name, record.partition)
        assert recorded == {
            key: (AssetCheckExecutionRecordStatus.SUCCEEDED if passed else AssetCheckExecutionRecordStatus.FAILED, passed)
            for key, passed in EXPECTED_CHECKS.items()
        }
        accepted = latest_materialization(instance, "validated_samples", ui.partition)
        quarantined = latest_materialization(instance, "quarantined_samples", ui.partition)
        assert accepted.metadata["dagster/row_count"].value == 2
        assert quarantined.metadata["dagster/row_count"].value == 6


def test_asset_graph_shows_every_asset_of_the_code_location(ui: UI, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expected = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert len(expected) >= 16  # the code location really loaded: exports, features, training, serving, monitoring, documents
    with chromium_page(tmp_path / "chromium", viewport=TALL_VIEWPORT) as page:
        page.set_default_timeout(TIMEOUT_MS)
        _dismiss_onboarding(page)
        _open_expanded_lineage(page, ui.web.url, zoom_out=False)  # names are drawn only at a readable zoom
        for name in sorted(expected):
            expect(page.locator("svg foreignObject").get_by_text(name, exact=True).first).to_be_attached()
        shown = _names_drawn_in_window(page)
        # After the test above (file order) the lab_exports nodes show their materialized partition.
        page.screenshot(path=ui.shots / "asset-graph.png")
    # Every asset is drawn on the graph (above); seven domain groups no longer fit one window at
    # a readable zoom, so the window must show all but a few of them.
    assert len(expected & shown.keys()) >= len(expected) - 3, f"drawn inside the window: {sorted(shown)}"
