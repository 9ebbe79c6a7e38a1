"""The long commands' progress bars as a person sees them: the real ``tracseq`` console script
in a pseudo-terminal (stdout and stderr both a terminal, as in a shell), its screen read back.

Rich draws the bars only when stderr is a terminal (``cli.progress_bars``), so a ``CliRunner``
or a pipe never shows them; only a terminal proves that they appear, move and finish.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from tracseq_dagster.documents.examples import qc_report_pdf, submission_form_pdf

TRACSEQ = str(Path(sys.executable).with_name("tracseq"))
COLUMNS, ROWS = 120, 40
#: CSI sequences (cursor moves, colours, erase line) and OSC sequences (titles, links).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[=>]")


def run_in_terminal(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run ``tracseq args`` with a pseudo-terminal as stdin, stdout and stderr; its exit code and
    everything it wrote to the terminal (escape sequences included)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [TRACSEQ, *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                raise AssertionError(
                    f"tracseq {' '.join(args)} ran over {timeout_s:.0f} s:\n{screen_text(b''.join(chunks))[-3000:]}"
                )
            ready, _, _ = select.select([master], [], [], min(remaining, 1.0))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not data:
                break
            chunks.append(data)
        return process.wait(timeout=30), b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def screen_text(raw: bytes | str) -> str:
    """The terminal output without escape sequences; each redraw of a line becomes a line of its own."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return _ESCAPES.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def clean_env(tmp_path: Path) -> dict[str, str]:
    """This machine's environment without the test session's settings, everything under ``tmp_path``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACSEQ_", "MLFLOW_", "DAGSTER_HOME", "BENTOML_", "PYTEST", "COV_", "COLUMNS", "LINES"))
    }
    (tmp_path / "home").mkdir(exist_ok=True)
    return {
        **base,
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "TRACSEQ_DATA_DIR": str(tmp_path / "data"),
        "HOME": str(tmp_path / "home"),
        "TERM": "xterm-256color",
    }


@pytest.mark.slow
def test_documents_ingest_bar_counts_files_and_pages_and_finishes(tmp_path: Path) -> None:
    """Two example PDFs: the bar starts at 0/2, passes 1/2 and ends at 2/2 with every page of both
    counted (the pages read from the PDFs themselves), above the results table."""
    folder = tmp_path / "documents"
    folder.mkdir()
    pdfs = [qc_report_pdf(folder), submission_form_pdf(folder)]
    pages = [len(pdfium.PdfDocument(path)) for path in pdfs]
    assert all(n >= 1 for n in pages)

    code, raw = run_in_terminal(["documents", "ingest", str(folder)], clean_env(tmp_path), tmp_path, timeout_s=600)
    screen = screen_text(raw)
    assert code == 0, screen[-3000:]
    assert "\x1b[" in raw, "no escape sequences: the command did not see a terminal"

    frames = [line for line in screen.split("\n") if "parsing documents" in line]
    counts = [re.search(r"(\d+)/2\s.*?(\d+) pages", line) for line in frames]
    progress = [(int(m.group(1)), int(m.group(2))) for m in counts if m]
    assert progress, f"no bar on the terminal:\n{screen[-3000:]}"
    files_done = [done for done, _ in progress]
    assert files_done[0] == 0 and files_done[-1] == 2, progress
    assert {0, 1, 2} <= set(files_done), progress  # it moved file by file, not straight to the end
    assert files_done == sorted(files_done), progress  # never backwards
    page_counts = [counted for _, counted in progress]
    assert page_counts == sorted(page_counts) and page_counts[-1] == sum(pages), (progress, pages)
    # one PDF's pages once the first file is done
    assert {counted for done, counted in progress if done == 1} <= set(pages), (progress, pages)
    assert "━" in frames[-1]

    # The results after the bar: the table of files and the index line.
    after = screen[screen.rfind("parsing documents") :]
    for path, n in zip(pdfs, pages, strict=True):
        row = next((line for line in after.split("\n") if path.name in line), None)
        assert row is not None and "ingested" in row and re.search(rf"\b{n}\b", row), after[-2000:]
    assert "document_index:" in after and "2 documents" in after, after[-2000:]


@pytest.mark.slow
def test_train_bars_show_trials_and_best_score_live_and_end_with_the_family_done(tmp_path: Path) -> None:
    """``tracseq train`` on a generated lab, one family, two trials at most: the family's bar starts
    with no trial, then shows the trials and the best CV score read live from Optuna's storage,
    and ends marked done beside the step lines and the training summary."""
    env = clean_env(tmp_path)
    landing = tmp_path / "data" / "landing"
    for args in (["generate-exports", "--rows", "1500", "--seed", "4", "--out", str(landing)], ["ingest", str(landing)]):
        prepared = subprocess.run([TRACSEQ, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]

    code, raw = run_in_terminal(
        ["train", "--model", "sample_quality", "--families", "logistic", "--budget-s", "30", "--max-trials", "2",
         "--cv-folds", "2", "--max-ece", "0.5"],
        env, tmp_path, timeout_s=900,
    )  # fmt: skip
    screen = screen_text(raw)
    assert code == 0, screen[-3000:]

    frames = [line for line in screen.split("\n") if "sample_quality/logistic" in line and "trials, best" in line]
    assert frames, f"no bar on the terminal:\n{screen[-3000:]}"
    trials = [int(m.group(1)) for line in frames if (m := re.search(r"(\d+) trials, best", line))]
    assert trials[0] == 0 and "best –" in frames[0], frames[:3]  # drawn before the sweep's first trial
    assert trials == sorted(trials) and trials[-1] in (1, 2), trials  # live, never backwards, at most --max-trials
    assert re.search(r"sample_quality/logistic ✓ .*[12] trials, best 0\.\d{4}", frames[-1]), frames[-1]
    assert "✓ automl_trials[sample_quality|logistic]" in screen and "promotion gate" in screen, screen[-3000:]
