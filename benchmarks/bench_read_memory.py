"""Memory of reading one frame of a multi-GB movie through ``blockreg.io.open_series``.

For each format a movie of ``--gib`` GiB (default 4) is generated in ``--dir``: ``.npy`` (NumPy
``open_memmap``, sparse: only the frames read are written), Imagine (``.imagine`` header + a sparse
``.cam``), BigTIFF (written frame by frame, uncompressed: every byte is on disk), a zlib-compressed
BigTIFF (one page per frame, so it is read page by page), OME-Zarr 0.5 and HDF5 (one chunk per
frame; chunks never written read as the fill value). Then a fresh Python process per format opens
the file and reads one frame (``reader[t]``), and reports:

- the growth of its peak resident memory (``VmHWM``, reset through ``/proc/self/clear_refs``
  after the imports; ``ru_maxrss`` elsewhere) from just before ``open_series`` (the format's
  library already imported) to after the read;
- tracemalloc's peak of Python/NumPy allocations over the same span;
- the times to open and to read, and whether the frame's pixels are the ones written.

The target (issue 9): peak memory near one frame, whatever the file size.

Usage::

    python benchmarks/bench_read_memory.py                  # 4 GiB per format in a temp folder
    python benchmarks/bench_read_memory.py --gib 1 --formats npy,tiff --keep --dir /scratch/bench
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAME = (1024, 2048)           # y, x
DTYPE = np.dtype(np.uint16)    # 4 MiB a frame
FORMATS = ("npy", "imagine", "tiff", "tiff-zlib", "zarr", "hdf5")


def frame_pattern(t: int) -> np.ndarray:
    """The pixels of frame ``t`` (distinct per frame, so a wrong frame is noticed)."""
    y, x = np.indices(FRAME)
    return ((y * 7 + x * 3 + t * 11) % 65521).astype(DTYPE)


def make_npy(folder: Path, nframes: int, probe: int) -> Path:
    path = folder / "movie.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=DTYPE, shape=(nframes,) + FRAME)
    arr[probe] = frame_pattern(probe)  # the rest stays a hole in a sparse file
    arr.flush()
    del arr
    return path


def make_imagine(folder: Path, nframes: int, probe: int) -> Path:
    from blockreg.io.imagine import write_header

    header = write_header(folder / "movie.imagine", shape=(nframes,) + FRAME, dtype=DTYPE,
                          spacing=(0.5, 0.5), time_step_s=0.033)
    frame_bytes = DTYPE.itemsize * int(np.prod(FRAME))
    with open(folder / "movie.cam", "wb") as cam:
        cam.truncate(nframes * frame_bytes)
        cam.seek(probe * frame_bytes)
        cam.write(frame_pattern(probe).tobytes())
    return header


def make_tiff(folder: Path, nframes: int, probe: int, *, name: str = "movie.btf",
              compression: str | None = None) -> Path:
    """A BigTIFF written frame by frame (uncompressed: memory-mapped when read)."""
    import tifffile

    path = folder / name
    filler = np.zeros(FRAME, DTYPE)
    frames = (frame_pattern(t) if t == probe else filler for t in range(nframes))
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(frames, shape=(nframes,) + FRAME, dtype=DTYPE, photometric="minisblack",
                  compression=compression, metadata={"axes": "TYX"})
    return path


def make_tiff_zlib(folder: Path, nframes: int, probe: int) -> Path:
    """A compressed TIFF (one zlib page per frame): read page by page, not memory-mapped."""
    return make_tiff(folder, nframes, probe, name="movie_zlib.tif", compression="zlib")


def make_zarr(folder: Path, nframes: int, probe: int) -> Path:
    import zarr

    path = folder / "movie.ome.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "t", "type": "time", "unit": "second"},
                 {"name": "y", "type": "space", "unit": "micrometer"},
                 {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [0.033, 0.5, 0.5]}]}]}]}
    arr = group.create_array("0", shape=(nframes,) + FRAME, chunks=(1,) + FRAME, dtype=DTYPE,
                             fill_value=0)
    arr[probe] = frame_pattern(probe)
    return path


def make_hdf5(folder: Path, nframes: int, probe: int) -> Path:
    import h5py

    path = folder / "movie.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("movie", shape=(nframes,) + FRAME, dtype=DTYPE,
                                chunks=(1,) + FRAME, fillvalue=0)
        dset[probe] = frame_pattern(probe)
    return path


MAKERS = {"npy": make_npy, "imagine": make_imagine, "tiff": make_tiff,
          "tiff-zlib": make_tiff_zlib, "zarr": make_zarr, "hdf5": make_hdf5}
LIBRARIES = {"npy": "numpy", "imagine": "numpy", "tiff": "tifffile", "tiff-zlib": "tifffile",
             "zarr": "zarr", "hdf5": "h5py"}

CHILD = r"""
import importlib, json, resource, sys, time, tracemalloc
import numpy as np
sys.path.insert(0, {bench_dir!r})
import bench_read_memory as bench
from blockreg.io import open_series
import blockreg.io.{module}
importlib.import_module({library!r})

def peak_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

try:  # reset the high-water mark, so the imports' transient peaks do not hide the read's
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
except OSError:
    pass
before = peak_kib()
tracemalloc.start()
t0 = time.perf_counter()
reader = open_series({path!r})
t1 = time.perf_counter()
frame = reader[{probe}]
t2 = time.perf_counter()
traced_peak = tracemalloc.get_traced_memory()[1]
after = peak_kib()
print(json.dumps({{"rss_growth_mib": (after - before) / 1024,
                  "traced_peak_mib": traced_peak / 2**20,
                  "open_s": t1 - t0, "read_s": t2 - t1, "shape": list(reader.shape),
                  "correct": bool(np.array_equal(frame, bench.frame_pattern({probe})))}}))
"""
MODULES = {"npy": "npy", "imagine": "imagine", "tiff": "tiff", "tiff-zlib": "tiff",
           "zarr": "zarrfile", "hdf5": "hdf5"}


def measure(fmt: str, path: Path, probe: int) -> dict:
    code = CHILD.format(bench_dir=str(Path(__file__).resolve().parent), module=MODULES[fmt],
                        library=LIBRARIES[fmt], path=str(path), probe=probe)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def disk_usage(path: Path) -> tuple[float, float]:
    """(apparent size, bytes actually allocated) in GiB, for a file or a folder."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if path.suffix == ".imagine":
        files.append(path.with_suffix(".cam"))
    apparent = sum(p.stat().st_size for p in files)
    allocated = sum(p.stat().st_blocks * 512 for p in files)
    return apparent / 2**30, allocated / 2**30


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=4.0, help="size of each movie (GiB)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--dir", help="where to write the movies (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the movies")
    args = parser.parse_args(argv)
    frame_mib = DTYPE.itemsize * np.prod(FRAME) / 2**20
    nframes = max(2, int(args.gib * 1024 / frame_mib))
    probe = nframes // 2 + 1
    movie_gib = nframes * frame_mib / 1024
    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench_read_memory_"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for fmt in args.formats.split(","):
            t0 = time.perf_counter()
            path = MAKERS[fmt](folder, nframes, probe)
            made = time.perf_counter() - t0
            apparent, allocated = disk_usage(path)
            result = measure(fmt, path, probe)
            result.update(format=fmt, file_gib=apparent, on_disk_gib=allocated, make_s=made)
            rows.append(result)
            print(json.dumps(result), file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"Date: {datetime.date.today()}; Python {platform.python_version()}, numpy "
          f"{np.__version__}; {platform.machine()}, {os.cpu_count()} CPUs; frame "
          f"{FRAME[0]}x{FRAME[1]} {DTYPE} = {frame_mib:.0f} MiB, {nframes} frames, frame {probe} "
          "read\n")
    print("| format | movie (GiB) | file (GiB) | on disk (GiB) | peak RSS growth (MiB) "
          "| tracemalloc peak (MiB) | open (s) | read (s) | pixels right |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {movie_gib:.2f} | {r['file_gib']:.2f} | {r['on_disk_gib']:.2f} | "
              f"{r['rss_growth_mib']:.1f} | {r['traced_peak_mib']:.1f} | {r['open_s']:.3f} | "
              f"{r['read_s']:.3f} | {'yes' if r['correct'] else 'NO'} |")


if __name__ == "__main__":
    main()
