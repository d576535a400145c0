"""The command line of issue 9: ``blockreg report``, ``blockreg export``, the ``--home`` of the
client commands, and ``blockreg register``'s progress bar, key figures and bound warning."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from blockreg.jobs import run_inprocess
from blockreg.store import member, open_results
from blockreg_services.cli import main

from helpers import service_fakes as fakes
from helpers.api_app import spec_for


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small finished registration (no report saved yet)."""
    folder = tmp_path_factory.mktemp("cli")
    fakes.make_movie(folder / "m.npy", shape=(5, 24, 20), seed=2)
    out = folder / "job.zarr"
    run_inprocess(spec_for(folder / "m.npy", monitor=["u", "mismatch", "warped"],
                           output={"path": str(out)}))
    return out


def test_report_of_a_store_works_without_a_server(store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    page = tmp_path / "r.html"
    assert main(["report", str(store), "--out", str(page)]) == 0
    out = capsys.readouterr().out
    assert "correlation with the fixed image" in out and f"wrote {page}" in out
    assert page.read_text().lstrip().lower().startswith("<!doctype html")
    # computed once and saved in the store: the JSON export is the stored report
    from blockreg.qc import load_report

    saved = load_report(store)
    assert main(["report", str(store), "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text()) == saved


def test_report_refuses_a_bad_target_or_suffix(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing.zarr")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.pdf")]) == 2


def test_export_movie_and_deformations(store, tmp_path, capsys):
    import tifffile

    assert main(["export", str(store), str(tmp_path / "w.tif"), "--dtype", "float32"]) == 0
    movie = tifffile.imread(tmp_path / "w.tif")
    np.testing.assert_array_equal(movie, member(open_results(store), "warped")[...])
    assert main(["export", str(store), str(tmp_path / "u.npz"), "--what", "deformation"]) == 0
    with np.load(tmp_path / "u.npz") as npz:
        np.testing.assert_array_equal(npz["u"], open_results(store)["u"][...])
    assert "wrote" in capsys.readouterr().out
    assert main(["export", str(store), str(tmp_path / "w.tif"), "--dtype", "complex64"]) == 2
    assert "dtype" in capsys.readouterr().err


def test_client_commands_find_the_server_of_their_home(tmp_path, monkeypatch):
    from blockreg_services import cli

    home = tmp_path / "lab"
    home.mkdir()
    (home / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": os.getpid()}))
    monkeypatch.delenv("BLOCKREG_SERVER", raising=False)
    assert cli.default_server(home) == "http://127.0.0.1:9"
    args = cli.build_parser().parse_args(["status", "3", "--home", str(home)])
    assert cli._client(args).url == "http://127.0.0.1:9"
    # nobody answers there: the error names the URL found in that home
    assert main(["list", "--home", str(home)]) == 2


def test_progress_bar_shows_rate_and_eta_on_a_terminal_only():
    from blockreg.progress import ProgressBar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    now = [0.0]
    tty = Tty()
    bar = ProgressBar(tty, clock=lambda: now[0], min_interval=0)
    for done in (1, 2):
        now[0] += 0.5
        bar(done, 10)
    bar.close()
    assert "2/10 frames" in tty.getvalue() and "2.0 frames/s" in tty.getvalue()
    assert "ETA 0:04" in tty.getvalue() and tty.getvalue().endswith("\n")
    log = io.StringIO()  # not a terminal: nothing
    ProgressBar(log)(1, 10)
    assert log.getvalue() == ""


def test_register_ends_with_key_figures_and_warns_at_the_bound(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(3)
    from scipy.ndimage import gaussian_filter

    base = gaussian_filter(rng.random((40, 40)), 2) * 1000 + 200
    movie = np.stack([np.roll(base, 4 * t, axis=1) for t in range(3)]).astype(np.float32)
    np.save(tmp_path / "moving.npy", movie)
    code = main(["register", str(tmp_path / "moving.npy"), "--out", str(tmp_path / "r.zarr"),
                 "--gridsize", "2,2", "--maxshift", "2,2", "--lambda", "0.01", "--fixed-index",
                 "0", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    assert "quality report" in captured.out and "correlation with the fixed image" in captured.out
    assert "maxshift bound" in captured.err and "raise params.maxshift" in captured.err
    assert "\r" not in captured.err  # --quiet (and not a terminal): no progress bar
