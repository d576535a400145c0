"""`blockreg submit --wait` / `blockreg demo` show what a job waits for on the progress line."""
from __future__ import annotations

from blockreg_services import cli


def test_progress_line_says_what_the_job_waits_for(tmp_path):
    log = tmp_path / "progress.txt"
    with open(log, "w") as stream:
        bar = cli.ProgressBar(stream, width=4)
        bar({"id": 1, "state": "running", "frames_total": 4, "frames_done": 2,
             "waiting": True, "waiting_reason": "no live worker on queue cpu"})
        bar({"id": 1, "state": "running", "frames_total": 4, "frames_done": 2,
             "waiting": False, "waiting_reason": None})
        bar.close()
    lines = log.read_text().splitlines()
    assert lines[0] == "job 1 [##..] 2/4 frames  running  waiting: no live worker on queue cpu"
    assert lines[1] == "job 1 [##..] 2/4 frames  running"
