"""``blockreg register``: options -> the same result as the Python API; one-line errors, exit 2."""
import argparse

import numpy as np
import pytest

from blockreg.algorithms.apertures import Apertures
from blockreg.commandline import add_register_parser, run_register
from blockreg.reg.deformation import nodes_for_shape
from blockreg.reg.preprocess import PreprocessSNF
from blockreg.runner import register
from blockreg.store import open_results, read_results
from blockreg.synthetic import make_movie


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory):
    movie, _, _ = make_movie((48, 56), 4, max_translation=3, max_local=1, seed=5, photons=300)
    path = tmp_path_factory.mktemp("cli") / "movie.npy"
    np.save(path, movie)
    return path, movie


def _parse(argv, mount="subparsers"):
    parser = argparse.ArgumentParser(prog="blockreg")
    if mount == "subparsers":
        add_register_parser(parser.add_subparsers(dest="command"))
        return parser.parse_args(["register"] + argv)
    add_register_parser(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("mount", ["subparsers", "parser"])
def test_register_matches_the_python_api(tmp_path, movie_file, capsys, mount):
    path, movie = movie_file
    out = tmp_path / "out.zarr"
    args = _parse([str(path), "--out", str(out), "--gridsize", "3,3", "--maxshift", "5,5",
                   "--lambda", "0.001", "--bias", "100", "--sigma-hp", "12", "--fixed-index", "1",
                   "--monitor", "u,mismatch,warped", "--frames", "1:4"], mount)
    assert run_register(args) == 0
    assert "registered 3 frames" in capsys.readouterr().out
    pp = PreprocessSNF(bias=100, sigma_lp=0, sigma_hp=12)
    fixed = np.asarray(pp(movie[1]), dtype=np.float32)
    alg = Apertures(fixed, nodes_for_shape(fixed.shape, (3, 3)), (5, 5), 1e-3, preprocess=pp)
    expected = register(movie[1:4], alg, monitor=("u", "mismatch"))
    stored = read_results(out)
    np.testing.assert_allclose(stored["u"], expected["u"], atol=1e-9)
    np.testing.assert_allclose(stored["mismatch"], expected["mismatch"], rtol=1e-9)
    assert stored["warped"].shape == (3, 48, 56) and stored["warped"].dtype == np.float32
    meta = open_results(out).attrs["blockreg"]
    assert meta["frames"] == [1, 2, 3] and meta["fixed_index"] == 1


def test_auto_lambda_and_two_passes(tmp_path, movie_file):
    path, _ = movie_file
    out = tmp_path / "auto.zarr"
    args = _parse([str(path), "--out", str(out), "--gridsize", "3,3", "--maxshift", "5,5",
                   "--lambda", "1e-4,1", "--passes", "2", "--monitor", "u,lambda,lambdas",
                   "--frames", "0:2"])
    assert run_register(args) == 0
    stored = read_results(out)
    assert stored["lambdas"].shape == (2, 14) and np.isin(stored["lambda"], stored["lambdas"]).all()


BASE = ["--gridsize", "3,3", "--maxshift", "5,5", "--lambda", "0.001"]


@pytest.mark.parametrize("change,option", [
    ({"--gridsize": "3"}, "--gridsize"),
    ({"--gridsize": "3,x"}, "--gridsize"),
    ({"--maxshift": "5,5,5"}, "--maxshift"),
    ({"--maxshift": "60,5"}, "--maxshift"),
    ({"--lambda": "abc"}, "--lambda"),
    ({"--lambda": "-1"}, "--lambda"),
    ({"--lambda": "10,1"}, "--lambda"),
    ({"--frames": "0:99"}, "--frames"),
    ({"--frames": "1"}, "--frames"),
    ({"--monitor": "u,nope"}, "--monitor"),
    ({"--workers": "0"}, "--workers"),
    ({"--passes": "3"}, "--passes"),
    ({"--fixed-index": "40"}, "--fixed-index"),
    ({"--sigma-hp": "1,2,3"}, "--sigma-hp"),
])
def test_bad_options_give_one_line_and_exit_2(tmp_path, movie_file, capsys, change, option):
    path, _ = movie_file
    opts = dict(zip(BASE[::2], BASE[1::2]))
    opts.update(change)
    argv = [str(path), "--out", str(tmp_path / "o.zarr")] + [x for kv in opts.items() for x in kv]
    assert run_register(_parse(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("blockreg register: error: ") for line in err)
    assert option in err[0] and "Traceback" not in "".join(err)
    assert not (tmp_path / "o.zarr").exists()


def test_missing_input_and_existing_output(tmp_path, movie_file, capsys):
    path, _ = movie_file
    assert run_register(_parse([str(tmp_path / "none.npy"), "--out", str(tmp_path / "o.zarr")] + BASE)) == 2
    assert "INPUT" in capsys.readouterr().err
    (tmp_path / "exists.zarr").mkdir()
    assert run_register(_parse([str(path), "--out", str(tmp_path / "exists.zarr")] + BASE)) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "exists" in err


def test_options_come_from_the_registry(tmp_path, movie_file, capsys):
    # a second algorithm registered through the registry alone gets its options and runs
    from blockreg.registry import registered

    from helpers import service_fakes as fakes

    path, movie = movie_file
    with registered(fakes.MEAN_SHIFT):
        out = tmp_path / "toy.zarr"
        args = _parse([str(path), "--out", str(out), "--algorithm", "mean-shift",
                       "--gridsize", "2,3", "--fixed-index", "0", "--frames", "0:3"])
        assert run_register(args) == 0, capsys.readouterr().err
        u = read_results(out)["u"]
        for t in range(3):
            np.testing.assert_allclose(u[t], fakes.expected_u(movie, t, 0, [[0, 48], [0, 56]],
                                                              [2, 3]), rtol=1e-5)
        # a parameter of another algorithm is named as such; the toy's own rule by its option
        argv = [str(path), "--out", str(tmp_path / "o.zarr"), "--algorithm", "mean-shift"]
        assert run_register(_parse(argv + ["--gridsize", "2,3", "--maxshift", "5,5"])) == 2
        assert capsys.readouterr().err.strip() == (
            "blockreg register: error: --maxshift: not a parameter of --algorithm mean-shift")
        assert run_register(_parse(argv + ["--gridsize", "2,300"])) == 2
        assert "--gridsize: 300 nodes exceed" in capsys.readouterr().err
    # unregistered again after the block
    argv = [str(path), "--out", str(tmp_path / "o.zarr"), "--algorithm", "mean-shift",
            "--gridsize", "2,3"]
    assert run_register(_parse(argv)) == 2
    assert "--algorithm: unknown algorithm 'mean-shift'" in capsys.readouterr().err


def test_missing_algorithm_option_is_one_line(tmp_path, movie_file, capsys):
    path, _ = movie_file
    argv = [str(path), "--out", str(tmp_path / "o.zarr"), "--gridsize", "3,3", "--maxshift", "5,5"]
    assert run_register(_parse(argv)) == 2
    assert capsys.readouterr().err.strip() == "blockreg register: error: --lambda: Field required"
