"""The landing-folder scan and the export sensor, on real temporary folders."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import fsspec
import pytest

from assets.lab_exports.partitions import lab_export_partitions
from assets.lab_exports.sensors import lab_export_sensor
from assets.new_files import SOURCE_PATH_TAG
from resources import LandingZoneResource
from tracseq_dagster.landing import LandingCursor, content_hash, is_temporary, list_landing_files, scan_landing

EXPORT = b"sample_id,project_id\nTS-2025-000001,P1\n"


class SensorHarness:
    """Ticks the real sensor against a folder and a real instance, as the daemon would."""

    def __init__(self, folder: Path, instance: dg.DagsterInstance) -> None:
        self.folder, self.instance, self.cursor = folder, instance, None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"landing_zone": LandingZoneResource(url=str(self.folder))}
        )
        result = lab_export_sensor(context)
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        return result

    def keys(self, result: dg.SensorResult) -> list[str]:
        return [r.partition_key for r in result.run_requests]


@pytest.fixture
def harness(tmp_path: Path, sqlite_instance: dg.DagsterInstance) -> SensorHarness:
    folder = tmp_path / "landing"
    folder.mkdir()
    return SensorHarness(folder, sqlite_instance)


def _touch_later(path: Path, seconds: float = 2.0) -> None:
    """Move a file's mtime forward so a change is visible even on coarse clocks."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + seconds))


def test_new_file_waits_one_tick_then_becomes_one_partition_and_run(harness: SensorHarness) -> None:
    path = harness.folder / "export_a.csv"
    path.write_bytes(EXPORT)
    first = harness.tick()
    assert first.run_requests == []
    second = harness.tick()
    assert harness.keys(second) == [content_hash(str(path))]
    assert second.run_requests[0].tags[SOURCE_PATH_TAG] == str(path)
    assert harness.instance.get_dynamic_partitions(lab_export_partitions.name) == [content_hash(str(path))]
    assert harness.tick().run_requests == []  # nothing new: nothing more


def test_file_still_being_written_waits_until_it_stops_changing(harness: SensorHarness) -> None:
    path = harness.folder / "growing.csv"
    path.write_bytes(EXPORT[:10])
    assert harness.tick().run_requests == []
    with path.open("ab") as handle:
        handle.write(EXPORT[10:])
    _touch_later(path)
    assert harness.tick().run_requests == [], "size changed between ticks: must wait"
    assert harness.keys(harness.tick()) == [content_hash(str(path))]


def test_temporary_suffix_is_ignored_until_renamed(harness: SensorHarness) -> None:
    part = harness.folder / "export.csv.part"
    part.write_bytes(EXPORT)
    harness.tick()
    assert harness.tick().run_requests == []
    final = harness.folder / "export.csv"
    part.rename(final)
    harness.tick()
    assert harness.keys(harness.tick()) == [content_hash(str(final))]


def test_same_bytes_again_start_nothing_and_changed_bytes_start_a_new_partition(harness: SensorHarness) -> None:
    path = harness.folder / "export.csv"
    path.write_bytes(EXPORT)
    harness.tick()
    first_key = harness.keys(harness.tick())[0]

    shutil.copyfile(path, harness.folder / "export_copy.csv")  # re-dropped under another name
    harness.tick()
    assert harness.tick().run_requests == []

    path.write_bytes(EXPORT + b"TS-2025-000002,P1\n")  # the lab fixed and re-sent the file
    _touch_later(path, 5)
    harness.tick()
    keys = harness.keys(harness.tick())
    assert len(keys) == 1 and keys[0] != first_key
    assert sorted(harness.instance.get_dynamic_partitions(lab_export_partitions.name)) == sorted([first_key, keys[0]])


def test_unreadable_file_is_reported_and_does_not_block_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    good, vanishing = folder / "good.csv", folder / "vanishing.csv"
    good.write_bytes(EXPORT)
    vanishing.write_bytes(EXPORT + b"x")
    files = list_landing_files(str(folder))
    cursor = scan_landing(files, LandingCursor(), content_hash).cursor
    vanishing.unlink()  # gone between listing and reading: open() fails
    result = scan_landing(files, cursor, content_hash)
    assert [r.file.path for r in result.ready] == [str(good)]
    assert len(result.errors) == 1 and "vanishing.csv" in result.errors[0]
    assert str(vanishing) in result.cursor.pending, "an unreadable file is retried on the next tick"


def test_cursor_stays_small_with_many_files(harness: SensorHarness) -> None:
    for i in range(300):
        (harness.folder / f"export_{i:04d}.csv").write_bytes(EXPORT + f"TS-2025-{i:06d},P{i}\n".encode())
    harness.tick()
    assert len(harness.tick().run_requests) == 300
    assert harness.tick().run_requests == []
    cursor = LandingCursor.from_json(harness.cursor)
    assert cursor.pending == {}
    assert len(harness.cursor) < 300 * 60, "cursor must not grow with every file ever seen"
    assert len(cursor.at_watermark) < 300


def test_file_copied_with_an_old_mtime_is_still_seen(harness: SensorHarness) -> None:
    (harness.folder / "first.csv").write_bytes(EXPORT)
    harness.tick()
    harness.tick()
    late = harness.folder / "late.csv"
    late.write_bytes(EXPORT + b"TS-2025-000009,P9\n")
    os.utime(late, (time.time() - 86400, time.time() - 86400))  # like `cp -p` or `rsync -t`
    harness.tick()
    assert harness.keys(harness.tick()) == [content_hash(str(late))]


def test_fsspec_url_landing_folder(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/tracseq-landing/a.csv", EXPORT)
    fs.pipe("/tracseq-landing/b.csv.tmp", EXPORT)
    files = list_landing_files("memory://tracseq-landing")
    assert [f.path for f in files] == ["memory:///tracseq-landing/a.csv"]
    assert content_hash(files[0].path) == content_hash(_write(tmp_path / "same.csv", EXPORT))


def test_temporary_names() -> None:
    assert is_temporary("x/export.csv.crdownload")
    assert is_temporary("x/.export.csv")
    assert is_temporary("x/export.csv~")
    assert not is_temporary("x/export.csv")


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


RUN_EXPORT = (
    b"run_id,sample_id,instrument_id,flowcell_id,library_kit,library_prep_ts,run_start_ts\n"
    b"RUN-2025-00001,TS-2025-000001,SEQ-01,FC-1,DNA-PCRFREE,2025-03-05T08:00:00Z,2025-03-06T08:00:00Z\n"
)


def test_each_kind_goes_to_its_own_job_and_partitions(harness: SensorHarness) -> None:
    runs, samples = harness.folder / "runs.csv", harness.folder / "samples.csv"
    runs.write_bytes(RUN_EXPORT)
    samples.write_bytes(EXPORT)  # lacks most sample columns: no kind, so the sample job fails it
    harness.tick()
    requests = harness.tick().run_requests
    assert {Path(r.tags[SOURCE_PATH_TAG]).name: r.job_name for r in requests} == {
        "runs.csv": "ingest_run_export",
        "samples.csv": "ingest_lab_export",
    }
    assert harness.instance.get_dynamic_partitions("run_exports") == [content_hash(str(runs))]
    assert harness.instance.get_dynamic_partitions(lab_export_partitions.name) == [content_hash(str(samples))]
    (harness.folder / "runs_again.csv").write_bytes(RUN_EXPORT)  # same bytes: nothing, whatever the kind
    harness.tick()
    assert harness.tick().run_requests == []
