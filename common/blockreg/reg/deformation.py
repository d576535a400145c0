"""Grid deformations: displacements on a regular node grid, interpolated by quadratic B-splines.

A deformation maps pixel ``x`` to ``phi(x) = x + u(x)``.  ``u`` is known on a regular grid of
nodes spanning the image (node ``i`` along axis ``a`` at ``i * (n_a - 1) / (g_a - 1)``, 0-based
pixel coordinates) and interpolated in between, per component, by a quadratic B-spline (see
:mod:`blockreg.reg.bspline`).  Arrays follow NumPy's axis order: ``u`` has shape ``(*gridsize, N)``
and lists its components in axis order.

Beyond the half-cell past the outer nodes the spline is extended by a constant (the value at the
half-cell edge, where the ``"flat"`` spline has zero slope), as ``Flat(OnCell())`` does.

References
----------
.. [1] HolyLab, RegisterDeformation.jl, ``src/griddeformation.jl`` (``GridDeformation``,
       ``interpolate``, composition ``phi_old(phi_new)``, ``tform2deformation``, ``regrid``).
"""
from __future__ import annotations

import itertools
import numbers
from functools import lru_cache

import numpy as np

from .._backend import array_module, device_constant, to_device, to_host
from ..errors import ParameterError
from .bspline import _check_bc, evaluation_matrix, pad_ghosts, prefilter, stencil

__all__ = [
    "GridDeformation",
    "compose",
    "grid_deformations",
    "node_grid",
    "nodes_for_shape",
    "regrid",
    "tform_to_deformation",
]


def nodes_for_shape(shape, gridsize):
    """Evenly spaced node positions spanning an image of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(n_0, ..., n_{N-1})``.
    gridsize : tuple of int
        Number of nodes per axis.

    Returns
    -------
    tuple of ndarray
        ``linspace(0, n_a - 1, g_a)`` per axis; a single node sits at the centre ``(n_a - 1) / 2``.
    """
    shape = tuple(int(n) for n in shape)
    gridsize = tuple(int(g) for g in gridsize)
    if len(shape) != len(gridsize):
        raise ParameterError("gridsize", f"must have {len(shape)} entries (one per image axis), "
                                         f"got {gridsize}")
    if any(n < 1 for n in shape):
        raise ParameterError("shape", f"must be positive, got {shape}")
    if any(g < 1 for g in gridsize):
        raise ParameterError("gridsize", f"must be positive, got {gridsize}")
    return tuple(_evenly_spaced(0.0, n - 1.0, g) for n, g in zip(shape, gridsize))


def _evenly_spaced(first, last, g):
    """``g`` node positions spanning ``[first, last]``; a single node sits at the centre."""
    return np.linspace(first, last, g) if g > 1 else np.array([(first + last) / 2.0])


def node_grid(nodes, xp=np):
    """All node positions as an array of shape ``(*gridsize, N)`` (components in axis order)."""
    axes = [to_device(np.asarray(n, dtype=np.float64), xp) for n in nodes]
    return xp.stack(xp.meshgrid(*axes, indexing="ij"), axis=-1)


def _is_shape(nodes) -> bool:
    return all(isinstance(n, numbers.Integral) or (np.ndim(n) == 0 and np.asarray(n).dtype.kind in "iu")
               for n in nodes)


def _validate_nodes(nodes, gridsize):
    checked = []
    for a, (n, g) in enumerate(zip(nodes, gridsize)):
        n = np.asarray(to_host(n), dtype=np.float64)
        if n.ndim != 1:
            raise ParameterError(f"nodes[{a}]", f"must be 1-D, got shape {n.shape}")
        if n.size != g:
            raise ParameterError(f"nodes[{a}]", f"has {n.size} positions but u has {g} nodes along "
                                                f"axis {a}")
        if not np.all(np.isfinite(n)):
            raise ParameterError(f"nodes[{a}]", "must be finite")
        if n.size > 1:
            steps = np.diff(n)
            if np.any(steps <= 0):
                raise ParameterError(f"nodes[{a}]", "must be strictly increasing")
            if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
                raise ParameterError(f"nodes[{a}]", "must be evenly spaced")
        n.setflags(write=False)
        checked.append(n)
    return tuple(checked)


class GridDeformation:
    """Displacements ``u`` on a regular grid of nodes, interpolated by quadratic B-splines.

    Parameters
    ----------
    u : ndarray, shape ``(*gridsize, N)``, or sequence of N arrays of shape ``gridsize``
        Displacement (pixels) at every node; NumPy or CuPy.
    nodes : tuple of N 1-D arrays, or tuple of N ints
        Node positions per axis (0-based pixel coordinates, strictly increasing, evenly spaced),
        or the image shape: the nodes then span the image (see :func:`nodes_for_shape`).

    Attributes
    ----------
    u : ndarray, shape ``(*gridsize, N)``
    nodes : tuple of ndarray (host, float64)
    ndim : int
        Number of spatial dimensions N.
    gridsize : tuple of int

    Notes
    -----
    The original cannot represent a grid of one node along an axis; here such an axis carries a
    single node at the image centre and ``u`` is constant along it.
    """

    def __init__(self, u, nodes):
        if isinstance(u, (tuple, list)):
            xp = array_module(*u)
            u = xp.stack([xp.asarray(c) for c in u], axis=-1)
        xp = array_module(u)
        u = xp.asarray(u)
        if u.dtype.kind != "f":
            u = u.astype(np.float64)
        nodes = tuple(nodes)
        N = len(nodes)
        if N == 0:
            raise ParameterError("nodes", "must name at least one axis")
        if u.ndim != N + 1 or u.shape[-1] != N:
            raise ParameterError("u", f"must have shape (*gridsize, {N}) for {N} node axes, got "
                                      f"{u.shape}")
        gridsize = tuple(int(g) for g in u.shape[:-1])
        if any(g < 1 for g in gridsize):
            raise ParameterError("u", f"must have at least one node per axis, got gridsize {gridsize}")
        if _is_shape(nodes):
            nodes = nodes_for_shape(nodes, gridsize)
        self.u = u
        self.nodes = _validate_nodes(nodes, gridsize)
        self.ndim = N
        self.gridsize = gridsize
        self._coefficients = {}

    def __repr__(self):
        spans = ", ".join(
            f"{n[0]:g}..{n[-1]:g}" if n.size > 1 else f"{n[0]:g}" for n in self.nodes
        )
        kind = type(self.u).__module__.split(".")[0]
        return f"GridDeformation(gridsize={self.gridsize}, nodes=({spans}), dtype={self.u.dtype}, array={kind})"

    def with_u(self, u):
        """A new deformation with displacements ``u`` on the same nodes."""
        return GridDeformation(u, self.nodes)

    @property
    def _xp(self):
        return array_module(self.u)

    def coefficients(self, bc="flat"):
        """Quadratic B-spline coefficients of each component, shape ``(*gridsize, N)`` (cached)."""
        _check_bc(bc)
        if bc not in self._coefficients:
            self._coefficients[bc] = prefilter(self.u, axes=tuple(range(self.ndim)), bc=bc)
        return self._coefficients[bc]

    def _stencils(self, points, bc):
        """Per axis: lattice index, weights and d/dx weights at ``points`` (pixel coordinates)."""
        xp = self._xp
        out = []
        for a, (n, g) in enumerate(zip(self.nodes, self.gridsize)):
            x = points[..., a]
            if g == 1:
                idx = xp.zeros_like(x)
                inside = xp.zeros(x.shape, dtype=bool)  # constant axis: no slope
            else:
                step = float(n[1] - n[0])
                idx = (x - float(n[0])) / step
                inside = (idx >= -0.5) & (idx <= g - 0.5)
                idx = xp.clip(idx, -0.5, g - 0.5)
            # Clamp the cell index *before* taking the offset, so that the rounding at the
            # half-cell edge (ties to even) never reaches past the ghost coefficients.
            i = xp.clip(xp.round(idx), 0, g - 1)
            _, w, dw = stencil(idx - i)
            dw = dw * inside[..., None] / (float(n[1] - n[0]) if g > 1 else 1.0)
            out.append((i.astype(np.int64), w, dw))
        return out

    def _evaluate(self, points, bc, derivative_axis=None):
        xp = array_module(self.u, points)
        points = xp.asarray(points, dtype=np.float64)
        if points.shape[-1:] != (self.ndim,):
            raise ParameterError("points", f"must have shape (..., {self.ndim}), got {points.shape}")
        coef = pad_ghosts(self.coefficients(bc), axes=tuple(range(self.ndim)), bc=bc)
        stencils = self._stencils(points, bc)
        value = xp.zeros(points.shape[:-1] + (self.ndim,), dtype=coef.dtype)
        for offsets in itertools.product(range(3), repeat=self.ndim):
            weight = 1.0
            index = []
            for a, (k, (i, w, dw)) in enumerate(zip(offsets, stencils)):
                weight = weight * (dw if a == derivative_axis else w)[..., k]
                index.append(i + k)  # padded index of coefficient i - 1 + k
            value += weight[..., None] * coef[tuple(index)]
        return value

    def displacement_at(self, points, bc="flat"):
        """Interpolated displacement at arbitrary positions.

        Parameters
        ----------
        points : array_like, shape ``(..., N)``
            Pixel coordinates (0-based, components in axis order).
        bc : {"flat", "quadratic"}
            Spline boundary condition (see :mod:`blockreg.reg.bspline`).

        Returns
        -------
        ndarray, shape ``(..., N)``
        """
        return self._evaluate(points, bc)

    def jacobian_at(self, points, bc="flat"):
        """Spatial derivative of ``u`` at ``points``: ``J[..., i, j] = du_i / dx_j``, shape ``(..., N, N)``.

        Computed from the analytic derivative of the quadratic B-spline; zero along a single-node
        axis and outside the half-cell past the outer nodes (where ``u`` is constant-extended).
        """
        xp = self._xp
        cols = [self._evaluate(points, bc, derivative_axis=j) for j in range(self.ndim)]
        return xp.stack(cols, axis=-1)

    def field(self, shape, dtype=np.float32, bc="flat", xp=None):
        """Dense displacement at every pixel of an image of ``shape``.

        The spline is evaluated separably: per axis a ``(n_a, g_a)`` evaluation matrix maps grid
        coefficients to pixel positions, and the matrices are contracted one axis at a time.

        Parameters
        ----------
        shape : tuple of int
            Image shape (N entries).
        dtype : dtype
            Floating type of the result.
        bc : {"flat", "quadratic"}
        xp : module, optional
            Array module of the result (``numpy`` or ``cupy``); default: the module of ``u``.
            Only the small grid coefficients move between modules, so a deformation with host
            ``u`` gives a device field for a device image without a frame-sized transfer.

        Returns
        -------
        tuple of N ndarrays of ``shape``
            ``u_a`` at every pixel, components in axis order.
        """
        shape = tuple(int(n) for n in shape)
        if len(shape) != self.ndim:
            raise ParameterError("shape", f"must have {self.ndim} entries, got {shape}")
        if any(n < 1 for n in shape):
            raise ParameterError("shape", f"must be positive, got {shape}")
        xp = self._xp if xp is None else xp
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ParameterError("dtype", f"must be a floating type, got {dtype}")
        values = to_device(self.coefficients(bc), xp).astype(dtype, copy=False)
        for n_pix, nodes, g in zip(shape, self.nodes, self.gridsize):
            E = device_constant(_pixel_matrix(n_pix, float(nodes[0]), _step(nodes), g, bc), xp)
            # Contract the leading grid axis and append the pixel axis: after N steps the array
            # is (N, *shape), contiguous, without any transposition.
            values = xp.tensordot(values, E.astype(dtype, copy=False), axes=([0], [1]))
        return tuple(values[c] for c in range(self.ndim))


def _step(nodes) -> float:
    return float(nodes[1] - nodes[0]) if len(nodes) > 1 else 1.0


@lru_cache(maxsize=64)
def _pixel_matrix(n_pix, first, step, g, bc):
    if g == 1:
        return np.ones((n_pix, 1))
    idx = (np.arange(n_pix) - first) / step
    # Stay off the upper half-cell edge, where the shared evaluator's round-half-even would
    # pick a cell past the last node; the spline has zero slope there, so nothing changes.
    idx = np.clip(idx, -0.5, g - 0.5 - 1e-9)
    E = evaluation_matrix(g, idx, bc=bc)
    E.setflags(write=False)
    return E


def grid_deformations(us, nodes):
    """One :class:`GridDeformation` per frame of a ``(T, *gridsize, N)`` array (views, no copies)."""
    xp = array_module(us)
    us = xp.asarray(us)
    if us.ndim < 3:
        raise ParameterError("us", f"must have shape (T, *gridsize, N), got {us.shape}")
    return [GridDeformation(us[t], nodes) for t in range(us.shape[0])]


def compose(phi_old, phi_new, jacobians=False):
    """The composition ``phi_old(phi_new(x))`` sampled on ``phi_new``'s nodes.

    ``u_c(x_k) = u_new(x_k) + u_old(x_k + u_new(x_k))`` at every node ``x_k``, ``u_old`` interpolated.

    Parameters
    ----------
    phi_old, phi_new : GridDeformation
    jacobians : bool
        Also return ``J_k = I + grad u_old(x_k + u_new(x_k))``, shape ``(*gridsize, N, N)``, with
        ``J[..., i, j] = d phi_old_i / d x_j`` (the derivative of the composition with respect to
        ``u_new`` at each node).

    Returns
    -------
    GridDeformation or (GridDeformation, ndarray)

    References
    ----------
    .. [1] RegisterDeformation.jl, ``(phi_old::GridDeformation)(phi_new::GridDeformation)`` and
           ``compose``.
    """
    if phi_old.ndim != phi_new.ndim:
        raise ParameterError("phi_old", f"has {phi_old.ndim} dimensions but phi_new has {phi_new.ndim}")
    xp = array_module(phi_new.u)
    targets = node_grid(phi_new.nodes, xp) + phi_new.u
    u_c = phi_new.u + phi_old.displacement_at(targets).astype(phi_new.u.dtype, copy=False)
    composed = GridDeformation(u_c, phi_new.nodes)
    if not jacobians:
        return composed
    J = phi_old.jacobian_at(targets) + xp.eye(phi_new.ndim, dtype=np.float64)
    return composed, J


def regrid(phi, gridsize):
    """Resample the interpolated ``phi`` on a new node grid spanning the same positions.

    Parameters
    ----------
    phi : GridDeformation
    gridsize : tuple of int

    Returns
    -------
    GridDeformation
        Nodes ``linspace(first, last, g_a)`` over ``phi``'s node span.
    """
    gridsize = tuple(int(g) for g in gridsize)
    if len(gridsize) != phi.ndim or any(g < 1 for g in gridsize):
        raise ParameterError("gridsize", f"must be {phi.ndim} positive ints, got {gridsize}")
    nodes = []
    for a, (n, g) in enumerate(zip(phi.nodes, gridsize)):
        if n.size == 1 and g > 1:
            raise ParameterError("gridsize", f"asks for {g} nodes along axis {a}, but phi has a single "
                                                 "node there, so its span is unknown")
        nodes.append(_evenly_spaced(n[0], n[-1], g))
    xp = array_module(phi.u)
    u = phi.displacement_at(node_grid(nodes, xp)).astype(phi.u.dtype, copy=False)
    return GridDeformation(u, tuple(nodes))


def tform_to_deformation(A, b, shape, gridsize):
    """The affine map ``x -> A x + b`` as a grid deformation on nodes spanning ``shape``.

    Parameters
    ----------
    A : array_like, shape ``(N, N)``
        Linear part, acting on 0-based pixel coordinates in axis order.
    b : array_like, shape ``(N,)``
        Translation (pixels).
    shape : tuple of int
        Image shape.
    gridsize : tuple of int

    Returns
    -------
    GridDeformation
        ``u(x_k) = (A - I) x_k + b`` at every node.  Warping by it samples the image at
        ``A x + b`` exactly only where ``u`` is affine, i.e. up to the spline's boundary effect.
    """
    A = np.asarray(to_host(A), dtype=np.float64)
    b = np.asarray(to_host(b), dtype=np.float64)
    N = len(tuple(shape))
    if A.shape != (N, N):
        raise ParameterError("A", f"must have shape ({N}, {N}) for a {N}-D image, got {A.shape}")
    if b.shape != (N,):
        raise ParameterError("b", f"must have shape ({N},), got {b.shape}")
    nodes = nodes_for_shape(shape, gridsize)
    x = node_grid(nodes)
    u = x @ (A - np.eye(N)).T + b
    return GridDeformation(u, nodes)
