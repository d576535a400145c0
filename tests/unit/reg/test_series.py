"""Whole-series registration (blockreg.reg.series): the temporal parts of RegisterOptimize and
RegisterPenalty ported (reference §5.3-5.5, §8), windows and stitching, missing frames."""
import concurrent.futures

import numpy as np
import pytest

from blockreg.errors import ParameterError
from blockreg.reg.autolambda import auto_lambda_t
from blockreg.reg.penalty import AffinePenalty, interpolate_mm, total_penalty_series
from blockreg.reg.series import (
    optimize_series,
    optimize_series_windowed,
    plan_windows,
    series_penalty,
    stitch_windows,
    window_weights,
)
from helpers.quadratics import nodes_over, quadratic_mms


def quadratic_series(cs, Qs, maxshift, bc="flat"):
    return np.stack([interpolate_mm(quadratic_mms(cs[t], Qs[t], maxshift), bc=bc) for t in range(len(cs))])


def laplacian(T):
    L = 2 * np.eye(T) - np.eye(T, k=1) - np.eye(T, k=-1)
    L[0, 0] = L[-1, -1] = 1
    return L


def test_three_frames_closed_form():
    # RegisterOptimize's temporal test: identical apertures on a 2x2 grid with denominators 1, so a
    # frame's data term is the mean over its 4 apertures, (1/4) sum_k (u - c_t)^T Q_t (u - c_t), and
    # its gradient per node 2 c Q_t (u - c_t) with c = 1/4.  With a uniform u the affine term
    # vanishes; the optimum solves, per node, (2 c blockdiag(Q_t) + lam_t L (x) I) u = 2 c Q_t c_t.
    gridsize, maxshift, lam_t = (2, 2), (7, 7), 1.0
    c_t = np.array([[5.0, -3.0], [0.0, 0.0], [3.0, -1.0]])
    Q_t = np.stack([np.eye(2), np.zeros((2, 2)), np.eye(2)])
    cs = np.stack([np.broadcast_to(c, gridsize + (2,)) for c in c_t])
    Qs = np.stack([np.broadcast_to(Q, gridsize + (2, 2)) for Q in Q_t])
    mmis = quadratic_series(cs, Qs, maxshift, bc="quadratic")  # exact for quadratics
    c = 0.25
    H = np.zeros((6, 6))
    for t in range(3):
        H[2 * t:2 * t + 2, 2 * t:2 * t + 2] += 2 * c * Q_t[t]
    H += lam_t * np.kron(laplacian(3), np.eye(2))
    expected = np.linalg.solve(H, np.concatenate([2 * c * Q_t[t] @ c_t[t] for t in range(3)])).reshape(3, 2)

    us, penalty = optimize_series(cs, Qs, mmis, nodes_over((15, 15), gridsize), 1.0, lam_t, tol=1e-12)
    assert us.shape == cs.shape
    for k in np.ndindex(gridsize):
        np.testing.assert_allclose(us[(slice(None),) + k], expected, atol=1e-4)
    # the returned penalty is the series penalty at us, as RegisterPenalty defines it
    ap = AffinePenalty(nodes_over((15, 15), gridsize), 1.0)
    assert penalty == pytest.approx(total_penalty_series(us, ap, mmis, lam_t)[0], rel=1e-12)
    assert penalty == pytest.approx(series_penalty(us, mmis, ap.nodes, 1.0, lam_t, chunk=2), rel=1e-12)


def smooth_series(T, gridsize, rng, period, amplitude=2.0, noise=0.0):
    """Per-node trajectories ``amplitude * sin(2 pi t / period + phase)`` (+ observation noise)."""
    phase = rng.uniform(0, 2 * np.pi, gridsize + (2,))
    t = np.arange(T).reshape((T,) + (1,) * (len(gridsize) + 1))
    truth = amplitude * np.sin(2 * np.pi * t / period + phase)
    return truth, truth + noise * rng.standard_normal(truth.shape)


def random_curvatures(rng, T, gridsize, N=2):
    a = rng.standard_normal((T,) + gridsize + (N, N))
    return np.einsum("...ij,...kj->...ik", a, a) / N + 0.3 * np.eye(N)


def test_lambda_t_sweep_penalty_falls_as_the_truth_gets_smoother():
    # The same data fits (noiseless centres on the true trajectories) for slower and slower motion:
    # at every lam_t of a sweep the temporal smoother costs less data, so both the original's
    # quadratic proxy (auto_lambda_t) and the penalty of the full optimum fall monotonically as
    # the period grows; along the sweep (fixed truth) both rise with lam_t.  The sweep stops
    # before lam_t flattens every trajectory to its mean, where the penalty is the trajectory's
    # variance whatever its period.
    rng = np.random.default_rng(3)
    T, gridsize, maxshift = 24, (2, 2), (4, 4)
    nodes = nodes_over((40, 40), gridsize)
    Qs = random_curvatures(rng, T, gridsize)
    Es = np.zeros((T,) + gridsize)
    ap = AffinePenalty(nodes, 1e-3)
    periods = [3.0, 6.0, 12.0, 48.0]
    lam_ts = None
    proxies, fulls = [], []
    for period in periods:
        cs, _ = smooth_series(T, gridsize, np.random.default_rng(0), period)
        lam_ts, proxy = auto_lambda_t(Es, cs, Qs, ap, (1e-2, 2.0))
        proxies.append(proxy)
        mmis = quadratic_series(cs, Qs, maxshift)
        fulls.append([optimize_series(cs, Qs, mmis, nodes, 1e-3, lt)[1] for lt in lam_ts[::3]])
    proxies, fulls = np.array(proxies), np.array(fulls)
    assert np.all(np.diff(proxies, axis=0) < 0), proxies
    assert np.all(np.diff(fulls, axis=0) < 0), fulls
    assert np.all(np.diff(proxies, axis=1) > 0)
    assert np.all(np.diff(fulls, axis=1) > 0)


def noisy_problem(T, gridsize=(3, 3), maxshift=(5, 5), seed=1):
    rng = np.random.default_rng(seed)
    truth, cs = smooth_series(T, gridsize, rng, period=40.0, noise=0.7)
    Qs = random_curvatures(rng, T, gridsize)
    return truth, cs, Qs, quadratic_series(cs, Qs, maxshift), nodes_over((60, 60), gridsize)


def test_windowed_solution_matches_the_one_shot_solution():
    # Tolerance: 0.01 px at every node of every frame.  The window edges lack their neighbours
    # beyond the cut (0.7 px off at the cut here, decaying by ~0.55 per frame); the stitching
    # weights ignore the frames within a third of the overlap of a cut.
    T, lam, lam_t = 70, 1e-3, 0.5
    truth, cs, Qs, mmis, nodes = noisy_problem(T)
    one_shot, penalty = optimize_series(cs, Qs, mmis, nodes, lam, lam_t, tol=1e-10)
    seen = []
    windowed = optimize_series_windowed(cs, Qs, mmis, nodes, lam, lam_t, window=32, overlap=16,
                                        tol=1e-10, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == len(plan_windows(T, 32, 16)) and seen[-1][0] == seen[-1][1]
    np.testing.assert_allclose(windowed, one_shot, atol=1e-2)
    # the windows are independent: solved by a pool, in any order, the answer is the same
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pooled = optimize_series_windowed(cs, Qs, mmis, nodes, lam, lam_t, window=32, overlap=16,
                                          tol=1e-10, map=pool.map)
    np.testing.assert_array_equal(pooled, windowed)
    assert series_penalty(windowed, mmis, nodes, lam, lam_t) == pytest.approx(penalty, rel=1e-4)
    # the two-stage answer beats the frames' own fits
    assert np.sqrt(np.mean((one_shot - truth) ** 2)) < 0.6 * np.sqrt(np.mean((cs - truth) ** 2))


def test_missing_frames_are_filled_from_their_neighbours():
    T, lam, lam_t = 30, 1e-3, 2.0
    truth, cs, Qs, mmis, nodes = noisy_problem(T, seed=2)
    cs, Qs, mmis = cs.copy(), Qs.copy(), mmis.copy()
    missing = [0, 7, 8, 9, 20]
    cs[missing] = np.nan
    Qs[missing] = np.nan
    mmis[missing] = np.nan
    us, penalty = optimize_series(cs, Qs, mmis, nodes, lam, lam_t)
    assert np.all(np.isfinite(us)) and np.isfinite(penalty)
    # interpolated frames lie near the truth (the truth moves smoothly): well within the noise
    err = np.sqrt(np.mean((us[missing] - truth[missing]) ** 2))
    assert err < 0.7, err


def test_windows_cover_the_series_and_weights_sum_to_one():
    for T, W, O in [(100, 30, 8), (31, 30, 8), (30, 30, 4), (7, 10, 4), (250, 64, 32)]:
        windows = plan_windows(T, W, O)
        assert windows[0].start == 0 and windows[-1].stop == T
        assert all(len(w) == min(W, T) for w in windows)
        assert all(b.start - a.start <= W - O for a, b in zip(windows, windows[1:]))
        weights = window_weights(windows, T)
        total = np.zeros(T)
        for w, wt in zip(windows, weights):
            total[w.slice] += wt
            # a window's own cut edges never count
            if w.start > 0:
                assert wt[0] == 0
            if w.stop < T:
                assert wt[-1] == 0
        np.testing.assert_allclose(total, 1.0)
    # stitching constant results gives the constant
    windows = plan_windows(100, 30, 8)
    out = stitch_windows(windows, [np.full((30, 2, 2, 2), 3.0) for _ in windows], 100)
    np.testing.assert_allclose(out, 3.0)


@pytest.mark.parametrize("args, field", [
    ((100, 30, 2), "overlap"), ((100, 30, 16), "overlap"), ((0, 30, 8), "nframes"), ((100, 1, 8), "window"),
    ((100, 30.5, 8), "window"),
])
def test_plan_windows_rejects_bad_arguments(args, field):
    with pytest.raises(ParameterError) as info:
        plan_windows(*args)
    assert info.value.field == field


def test_optimize_series_rejects_bad_input():
    _, cs, Qs, mmis, nodes = noisy_problem(4)
    with pytest.raises(ParameterError, match="lam_t"):
        optimize_series(cs, Qs, mmis, nodes, 1e-3, -1.0)
    with pytest.raises(ParameterError, match="Qs"):
        optimize_series(cs, Qs[:, :, :, :1], mmis, nodes, 1e-3, 1.0)
    with pytest.raises(ParameterError, match="mmis"):
        optimize_series(cs, Qs, mmis[:3], nodes, 1e-3, 1.0)


@pytest.mark.parametrize("photons", [3, 200])
def test_two_stage_is_at_least_as_accurate_as_per_frame_and_better_at_low_counts(photons):
    # End to end on a smoothly moving synthetic sample: per-frame Apertures against
    # AperturesMismatch + optimize_series with a temporal weight.  At 200 photons (peak) single
    # frames register well and the two agree (measured 0.267 vs 0.259 px RMSE at the nodes, the
    # floor of a 3x3 grid on this motion); at 3 photons single frames are too noisy to register
    # alone (1.61 px) and the series borrows strength from neighbours (1.12 px).
    from blockreg.algorithms.apertures import Apertures
    from blockreg.algorithms.apertures_mismatch import AperturesMismatch
    from blockreg.reg.deformation import nodes_for_shape
    from blockreg.reg.preprocess import PreprocessSNF
    from blockreg.synthetic import grid_truth
    from helpers.smooth_motion import make_smooth_movie

    shape, gridsize, maxshift, lam, lam_t, T = (64, 64), (3, 3), (6, 6), 1e-3, 3e-3, 24
    movie, fixed_clean, u_true = make_smooth_movie(shape, T, photons=photons, seed=1, period=60.0,
                                                   smoothness=16.0)
    nodes = nodes_for_shape(shape, gridsize)
    truth = grid_truth(u_true, nodes)
    pp = PreprocessSNF(bias=100, sigma_lp=1.0, sigma_hp=np.inf)
    per_frame = Apertures(pp(fixed_clean), nodes, maxshift, lam, pp)
    us_per_frame = np.stack([per_frame.run_frame(movie[t], t, ["u"])["u"] for t in range(T)])
    first = AperturesMismatch(pp(fixed_clean), nodes, maxshift, pp)
    fits = [first.run_frame(movie[t], t, ["cs", "Qs", "mmis"]) for t in range(T)]
    cs, Qs, mmis = (np.stack([f[name] for f in fits]) for name in ("cs", "Qs", "mmis"))
    us_two_stage, _ = optimize_series(cs, Qs, mmis, nodes, lam, lam_t)

    def rmse(us):
        return float(np.sqrt(np.mean((us - truth) ** 2)))

    assert rmse(us_two_stage) <= rmse(us_per_frame) + 0.01
    if photons < 10:
        assert rmse(us_two_stage) < 0.8 * rmse(us_per_frame)


def test_vectorised_objective_equals_the_per_frame_penalties():
    # The series objective evaluates all frames at once; it must be RegisterPenalty's per-frame
    # total penalty (blockreg.reg.penalty.total_penalty) summed, plus the temporal term, to rounding.
    from blockreg.reg.penalty import temporal_penalty, total_penalty
    from blockreg.reg.series import _objective

    rng = np.random.default_rng(9)
    for gridsize, maxshift in [((3, 4), (4, 3)), ((2, 2, 3), (2, 3, 3))]:
        T, N = 5, len(gridsize)
        nodes = nodes_over((40,) * N, gridsize)
        mms = rng.uniform(0.5, 2.0, (T,) + gridsize + (2,) + tuple(2 * m + 1 for m in maxshift))
        mmis = np.stack([interpolate_mm(mms[t]) for t in range(T)])
        us = rng.uniform(-1.4, 1.4, (T,) + gridsize + (N,))
        ap = AffinePenalty(nodes, 0.3)
        present = np.array([True, True, False, True, True])
        value, grad = _objective(us, ap, mmis, present, 0.7)
        expected, expected_grad = temporal_penalty(us, 0.7)
        for t in range(T):
            v, g = total_penalty(us[t], ap, mmis[t]) if present[t] else ap(us[t])
            expected += v
            expected_grad[t] += g
        assert value == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)
        outside = us.copy()
        outside[1, 0, 0, 0] = maxshift[0] - 0.4
        assert np.isnan(_objective(outside, ap, mmis, present, 0.7)[0])


def test_windowed_solve_reads_one_window_at_a_time():
    class Recording:
        """An array that logs every read (a stand-in for a Zarr array on disk)."""

        def __init__(self, data, log):
            self.data, self.log, self.shape = data, log, data.shape

        def __getitem__(self, index):
            self.log.append(index)
            return self.data[index]

    T, reads = 90, []
    _, cs, Qs, mmis, nodes = noisy_problem(T, seed=4)
    us = optimize_series_windowed(Recording(cs, reads), Recording(Qs, reads), Recording(mmis, reads),
                                  nodes, 1e-3, 0.5, window=30, overlap=10)
    assert us.shape == cs.shape and np.all(np.isfinite(us))
    assert all(isinstance(r, slice) and r.stop - r.start <= 30 for r in reads)
    assert len(reads) == 3 * len(plan_windows(T, 30, 10))
    with pytest.raises(ParameterError, match="mmis"):
        optimize_series_windowed(cs, Qs, mmis[:50], nodes, 1e-3, 0.5, window=30, overlap=10)


def test_consensus_lambda_is_the_log_median_of_per_frame_choices():
    from blockreg.reg.autolambda import auto_lambda
    from blockreg.reg.series import consensus_lambda

    _, cs, Qs, mmis, nodes = noisy_problem(12, seed=6)
    lam, lams = consensus_lambda(cs, Qs, mmis, nodes, (1e-3, 1.0), frames=[1, 5, 9])
    ap = AffinePenalty(nodes, 1e-3)
    expected = [auto_lambda(cs[t], Qs[t], nodes, ap, mmis[t], (1e-3, 1.0))[2] for t in (1, 5, 9)]
    np.testing.assert_array_equal(lams, expected)
    assert lam == pytest.approx(np.median(expected))
    with pytest.raises(ParameterError, match="frames"):
        consensus_lambda(cs, Qs, mmis, nodes, (1e-3, 1.0), frames=[])
