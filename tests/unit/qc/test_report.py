"""The report of a results store: a real registered job, and stores built with known content."""
from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from blockreg.qc import NoReport, compute_report, load_report, load_report_html, save_report

FRAMES = 4  # conftest.FRAMES: the shared job's frames


class _Images(HTMLParser):
    """Collects the ``src`` of every ``<img>`` and every external reference of a page."""

    def __init__(self):
        super().__init__()
        self.sources, self.external = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs.get("src", ""))
        for key in ("href", "src"):
            value = attrs.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag == "script":
            self.external.append("<script>")


def parse(page):
    parser = _Images()
    parser.feed(page)
    parser.close()
    return parser


# --- a registered job ----------------------------------------------------------------------------

def test_registration_raises_the_correlation_with_the_fixed_image(demo_report):
    analysis, _, _ = demo_report
    s = analysis.report["summary"]
    before = np.array(analysis.report["sampled"]["correlation_before"], dtype=float)
    after = np.array(analysis.report["sampled"]["correlation_after"], dtype=float)
    assert len(before) == len(after) == FRAMES
    assert after.mean() > before.mean() + 0.1
    assert (after > before).all() and s["frames_improved_fraction"] == 1.0
    assert s["correlation_after_median"] > 0.9
    assert s["crispness_after"] > s["crispness_before"]
    assert s["mismatch_after_median"] < s["mismatch_before_median"]
    assert s["frames"] == s["frames_with_results"] == FRAMES


def test_scalar_metrics_cover_every_frame_and_agree_with_u(demo_job, demo_report):
    from blockreg import open_results

    report = demo_report[0].report
    u = np.asarray(open_results(demo_job[0])["u"][...])
    frames = report["frames"]
    assert frames["source_t"] == list(range(1, FRAMES + 1))
    np.testing.assert_allclose(frames["mean_u"], u.reshape(FRAMES, -1, 2).mean(axis=1), atol=1e-4)
    np.testing.assert_allclose(frames["max_abs_u"], np.linalg.norm(u, axis=-1).reshape(FRAMES, -1)
                               .max(axis=1), atol=1e-4)
    assert len(frames["mismatch"]) == FRAMES
    # the demo's motion stays well inside maxshift and is smooth: nothing to warn about
    assert report["summary"]["frames_at_bound"] == 0 and report["summary"]["frames_with_folds"] == 0
    assert report["warnings"] == []
    largest = report["largest_displacements"]
    assert largest[0]["max_abs_u"] == pytest.approx(max(frames["max_abs_u"]), abs=1e-4)
    assert report["grid_frame"] == largest[0]["position"]


def test_the_report_is_plain_json(demo_report):
    report = demo_report[0].report
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_the_page_embeds_every_figure_and_references_nothing_outside(demo_report):
    analysis, figures, page = demo_report
    assert set(figures) == {"mean_images", "worst_frame", "deformation_grid", "displacement",
                            "correlation", "mismatch"}
    parsed = parse(page)
    assert len(parsed.sources) == len(figures)
    assert all(src.startswith("data:image/png;base64,") for src in parsed.sources)
    assert parsed.external == []
    for fig in figures.values():
        assert fig.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_save_and_load_round_trip_inside_the_store(demo_job, demo_report, tmp_path):
    import warnings

    from blockreg import open_results
    from blockreg.store import read_results

    store = tmp_path / "copy.zarr"
    shutil.copytree(demo_job[0], store)
    assert load_report(store) is None and load_report_html(store) is None
    analysis, _, page = demo_report
    save_report(store, analysis.report, page)
    assert load_report(store) == analysis.report
    assert load_report_html(store) == page
    # the report lives in a Zarr group: listing the store stays clean and its arrays unchanged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = set(read_results(store))
        members = [name for name, _ in open_results(store).members()]
    assert "report" not in names and "report" in members
    # saving again replaces, and a report without a page drops the old page
    save_report(store, {"summary": {"frames": 1}})
    assert load_report(store) == {"summary": {"frames": 1}}
    assert load_report_html(store) is None


def test_write_report_stores_what_it_returns(demo_job, tmp_path):
    pytest.importorskip("matplotlib")
    from blockreg.qc import write_report

    store = tmp_path / "copy.zarr"
    shutil.copytree(demo_job[0], store)
    report, page = write_report(store, max_frames=2)
    assert report["summary"]["frames_sampled"] == 2
    assert report["sampled"]["position"] == [0, FRAMES - 1]  # spread over the movie
    assert load_report(store) == report and load_report_html(store) == page


def test_without_stored_warped_frames_the_report_warps_them_itself(movie, make_spec, demo_report,
                                                                  tmp_path):
    from blockreg.jobs import run_inprocess

    spec = make_spec(movie[0], tmp_path / "u_only.zarr", monitor=("u",))
    run_inprocess(spec)
    report = compute_report(tmp_path / "u_only.zarr")
    reference = demo_report[0].report["sampled"]
    assert report["frames"]["mismatch"] is None
    # warp() here and warped from the worker are the same computation on the same u
    np.testing.assert_allclose(report["sampled"]["correlation_after"],
                               reference["correlation_after"], atol=1e-5)
    np.testing.assert_allclose(report["sampled"]["correlation_before"],
                               reference["correlation_before"], atol=1e-12)


def test_a_moved_input_still_gives_the_store_s_metrics_with_a_warning(demo_job, make_spec, tmp_path):
    spec = make_spec(tmp_path / "gone.npy", tmp_path / "moved.zarr")
    shutil.copytree(demo_job[0], tmp_path / "moved.zarr")
    import zarr

    group = zarr.open_group(str(tmp_path / "moved.zarr"), mode="r+")
    attrs = dict(group.attrs["blockreg"])
    attrs["spec"] = spec
    group.attrs["blockreg"] = attrs
    report = compute_report(tmp_path / "moved.zarr")
    assert report["summary"]["frames_with_results"] == FRAMES
    assert all(c is None for c in report["sampled"]["correlation_before"])
    assert all(c > 0.9 for c in report["sampled"]["correlation_after"])  # from stored `warped`
    assert any("could not be read" in w for w in report["warnings"])


# --- stores with constructed displacements ------------------------------------------------------

def _store(path, u, maxshift=(4, 4), fixed=None):
    from blockreg.algorithms.base import ArrayDecl
    from blockreg.jobs import grid_nodes
    from blockreg.store import create_store, write_frame

    shape = (32, 32) if fixed is None else fixed.shape
    nodes = grid_nodes(shape, u.shape[1:-1])
    spec = {"algorithm": "Apertures", "maxshift": list(maxshift)}  # registered from the library
    group = create_store(path, len(u), {"u": ArrayDecl(u.shape[1:], "float64")},
                         attrs={"spec": spec, "nodes": nodes, "frames": list(range(10, 10 + len(u)))},
                         fixed=np.random.default_rng(0).random(shape) if fixed is None else fixed)
    for t in range(len(u)):
        if np.isfinite(u[t]).all():
            write_frame(group, t, {"u": u[t]})
    return path


def test_displacements_at_the_bound_are_listed_and_warned(tmp_path):
    u = np.zeros((6, 3, 3, 2))
    u[2, 0, 0] = [3.5, 0.0]          # maxshift 4: the optimiser's limit is 3.4999
    u[2, 1, 1] = [0.0, -3.49]
    u[4, 0, 0] = [-3.45, 1.0]
    u[5] = np.nan                     # never written
    report = compute_report(_store(tmp_path / "b.zarr", u))
    assert report["bound"]["frames"] == [2, 4]
    assert report["bound"]["nodes"][0] == {"node": [0, 0], "frames": 2}
    assert {"node": [1, 1], "frames": 1} in report["bound"]["nodes"]
    assert report["frames"]["nodes_at_bound"] == [0, 0, 2, 0, 1, 0]
    assert report["summary"]["frames_at_bound"] == 2
    assert report["summary"]["node_frames_at_bound_fraction"] == pytest.approx(3 / (5 * 9))
    assert report["summary"]["frames_with_results"] == 5
    text = " ".join(report["warnings"])
    assert "maxshift bound" in text and "1 of 6 frames have no displacement" in text
    assert "could not be read" in text  # no input in a library-made store
    # |(-3.45, 1.0)| = 3.59 beats 3.5; the store's frames start at source frame 10
    assert [d["source_t"] for d in report["largest_displacements"][:2]] == [14, 12]


def test_folds_are_counted_and_warned(tmp_path):
    u = np.zeros((3, 5, 5, 2))
    u[1, :, 2, 1] = 3.4              # node spacing 8 px: u_x drops 6.8 over 8 px ...
    u[1, :, 3, 1] = -3.4             # ... so 1 + du_x/dx < 0 between the nodes
    report = compute_report(_store(tmp_path / "f.zarr", u, fixed=np.ones((33, 33))))
    assert report["summary"]["frames_with_folds"] == 1
    assert report["frames"]["fold_fraction"][0] == 0 and report["frames"]["fold_fraction"][1] > 0
    assert report["summary"]["min_jacobian_det"] < 0
    assert any("fold" in w for w in report["warnings"])


def test_a_store_without_u_is_refused_by_name(tmp_path):
    from blockreg.algorithms.base import ArrayDecl
    from blockreg.store import create_store

    create_store(tmp_path / "m.zarr", 2, {"mismatch": ArrayDecl((), "float64")},
                 attrs={"nodes": [[0.0, 31.0], [0.0, 31.0]]})
    with pytest.raises(NoReport, match="'u'"):
        compute_report(tmp_path / "m.zarr")


def test_a_store_whose_every_frame_failed_has_no_report_and_says_why(tmp_path):
    from blockreg.orchestrate.finish import REPORT_ERROR_ATTR, after_finish
    from blockreg.store import open_store

    path = _store(tmp_path / "failed.zarr", np.full((4, 3, 3, 2), np.nan))
    with pytest.raises(NoReport, match="no frame"):
        compute_report(path)
    # job finalisation: no report, no exception, the reason left where the API finds it
    assert after_finish(7, str(path), "failed") is False
    assert "no frame" in open_store(str(path), "r").attrs[REPORT_ERROR_ATTR]
    assert load_report(path) is None


def test_the_qc_package_stays_off_the_server_stack_and_draws_lazily():
    from helpers.imports import SERVER_STACK, loaded_after

    code = "import blockreg.qc, blockreg.qc.metrics, blockreg.qc.report, blockreg.qc.html, " \
           "blockreg.qc.figures"
    assert loaded_after(code, SERVER_STACK + ("matplotlib",)) == []


def test_a_3d_store_without_input_gets_every_figure_it_has_data_for(tmp_path):
    pytest.importorskip("matplotlib")
    from blockreg.algorithms.base import ArrayDecl
    from blockreg.jobs import grid_nodes
    from blockreg.qc import analyse, make_figures, render_html
    from blockreg.reg.warp import warp
    from blockreg.store import create_store, write_frame

    rng = np.random.default_rng(7)
    fixed = rng.random((6, 20, 24)).astype(np.float32)
    u = rng.normal(scale=0.5, size=(3, 2, 3, 3, 3))
    nodes = grid_nodes(fixed.shape, (2, 3, 3))
    group = create_store(tmp_path / "v.zarr", 3, {"u": ArrayDecl((2, 3, 3, 3), "float64"),
                                                  "warped": ArrayDecl(fixed.shape, "float32")},
                         attrs={"spec": {"maxshift": [2, 4, 4]}, "nodes": nodes}, fixed=fixed)
    for t in range(3):
        write_frame(group, t, {"u": u[t], "warped": warp(fixed, u[t], nodes)})
    analysis = analyse(tmp_path / "v.zarr")
    report = analysis.report
    assert report["job"]["image_shape"] == [6, 20, 24] and report["job"]["gridsize"] == [2, 3, 3]
    assert report["summary"]["frames_sampled"] == 3
    assert all(c is None for c in report["sampled"]["correlation_before"])
    assert all(0.5 < c <= 1 for c in report["sampled"]["correlation_after"])
    figures = make_figures(report, analysis.images)
    # no input: no 'before' images, but means, frames, grid, time courses and correlations
    assert set(figures) == {"mean_images", "worst_frame", "deformation_grid", "displacement",
                            "correlation"}
    assert "3-D" in figures["mean_images"].caption
    assert len(parse(render_html(report, figures)).sources) == 5
