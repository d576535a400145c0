"""``blockreg.Client``: a small HTTP client of the coordinator's ``/api/v1``.

Example::

    from blockreg import Client
    client = Client("http://127.0.0.1:8750")
    job_id = client.submit({"input": {"path": "movie.tif"},
                            "params": {"gridsize": [5, 5], "maxshift": [10, 10], "lambda": 1e-3}})
    client.wait(job_id)
    u = client.results(job_id)["u"][...]
"""
from __future__ import annotations

import time

from . import settings
from .states import FINISHED_JOB_STATES

__all__ = ["Client", "ApiError", "read_token_file", "TOKEN_FILE"]

FINISHED = FINISHED_JOB_STATES  # the states Client.wait stops at


class ApiError(RuntimeError):
    """The coordinator answered with an error status.

    Attributes
    ----------
    status : int
        HTTP status code (4xx: the request was wrong, 5xx: the server failed).
    message : str
        The server's message.
    errors : list of dict
        ``{"field", "problem"}`` entries (e.g. for an invalid spec).
    """

    def __init__(self, status: int, message: str, errors=None):
        self.status = status
        self.message = message
        self.errors = list(errors or [])
        detail = "; ".join(f"{e.get('field')}: {e.get('problem')}" for e in self.errors)
        super().__init__(f"HTTP {status}: {message}" + (f" ({detail})" if detail else ""))


TOKEN_FILE = "token"  # in the home folder, written by `blockreg user add --home` (mode 0600)


def read_token_file(home) -> str | None:
    """The token saved in ``home`` (``home/token``), or None when there is none."""
    from pathlib import Path

    try:
        return (Path(home) / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class Client:
    """Client of a blockreg coordinator.

    Parameters
    ----------
    url : str, optional
        Base URL of the coordinator (default: the ``server`` setting, ``$BLOCKREG_SERVER`` —
        the variable the ``blockreg`` command reads too — else ``http://127.0.0.1:8750``).
    timeout : float
        Seconds to wait for each HTTP response.
    session : requests.Session, optional
        Reused for connection pooling (or a test double with the same ``request`` method).
    token : str, optional
        API token of a server with authentication (sent as ``Authorization: Bearer``); default
        the ``token`` setting (``$BLOCKREG_TOKEN``), else the token file ``$BLOCKREG_HOME/token``
        that ``blockreg user add --home`` writes, else none (single-user mode).
    """

    def __init__(self, url: str | None = None, *, timeout: float = 30.0, session=None,
                 token: str | None = None):
        import requests

        s = settings.load()
        self.url = (url or s.server_url).rstrip("/")
        self.timeout = float(timeout)
        self._http = session or requests.Session()
        self._token = token or s.token or read_token_file(s.home)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _request(self, method: str, path: str, *, answers=(), text=False, **kwargs):
        """One call; ``answers``: error statuses that are a result (health's 503), not an error.

        Only the documented exceptions leave: ConnectionError (unreachable, including a connect
        timeout), TimeoutError (no answer within ``timeout``), ApiError.
        """
        import requests

        try:
            if self._token:
                kwargs["headers"] = {**kwargs.get("headers", {}),
                                     "Authorization": f"Bearer {self._token}"}
            response = self._http.request(method, f"{self.url}/api/v1{path}",
                                          timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:  # ConnectTimeout is one too
            raise ConnectionError(f"cannot reach the coordinator at {self.url}: {exc}") from None
        except requests.Timeout:
            raise TimeoutError(f"the coordinator at {self.url} did not answer {method} {path} "
                               f"within {self.timeout:g} s") from None
        if response.status_code >= 400 and response.status_code not in answers:
            try:
                body = response.json()
                message, errors = body.get("message", response.reason), body.get("errors", [])
            except ValueError:
                message, errors = response.text[:500] or response.reason, []
            raise ApiError(response.status_code, message, errors)
        return response.text if text else response.json()

    def health(self) -> dict:
        """Database and broker reachability."""
        return self._request("GET", "/health", answers=(503,))

    def submit(self, spec) -> int:
        """Submit a job spec (dict or :class:`~blockreg.JobSpec`); return the new job's id."""
        if hasattr(spec, "to_json"):
            spec = spec.to_json()
        return int(self._request("POST", "/jobs", json=spec)["id"])

    def warp(self, source, *, input=None, medfilt=None, tinterpolate=False, dtype="float32",
             output=None, name=None) -> int:
        """Submit a warp job: apply the deformations of a finished job to a movie.

        Parameters
        ----------
        source : int or str
            A finished job's id, or the path of a results store holding ``u``.
        input : dict, optional
            The movie (``path``, ``dataset``, ``channel``); fields left out are the source
            job's, so ``{"channel": 1}`` warps another channel of the registered file.
        medfilt : int, optional
            Odd window of a running median of the deformations over time.
        tinterpolate : bool
            Also warp the frames between registered ones (deformations interpolated in time).
        dtype : {"float32", "input"}
        output : str, optional
            Path of the new store (default: the server's results folder).

        Returns
        -------
        int
            The warp job's id (its store's array ``registered`` is the warped movie).
        """
        spec = {"kind": "warp", "tinterpolate": bool(tinterpolate), "dtype": dtype,
                "source": {"job": int(source)} if isinstance(source, int) else {"path": str(source)}}
        for key, value in (("input", input), ("medfilt", medfilt), ("name", name)):
            if value is not None:
                spec[key] = value
        if output is not None:
            spec["output"] = {"path": str(output)}
        return self.submit(spec)

    def status(self, job_id: int) -> dict:
        """The job's state, frame counts, output path, timings and error."""
        return self._request("GET", f"/jobs/{int(job_id)}")

    def jobs(self, *, offset: int = 0, limit: int = 50, state: str | None = None) -> list:
        """Jobs, newest first."""
        params = {"offset": offset, "limit": limit}
        if state is not None:
            params["state"] = state
        return self._request("GET", "/jobs", params=params)["jobs"]

    def frames(self, job_id: int, *, state: str | None = None, offset: int = 0,
               limit: int = 100) -> list:
        """Per-frame state, timings and monitored scalars, in output order."""
        params = {"offset": offset, "limit": limit}
        if state is not None:
            params["state"] = state
        return self._request("GET", f"/jobs/{int(job_id)}/frames", params=params)["frames"]

    def cancel(self, job_id: int) -> dict:
        """Cancel a queued or running job (ApiError 409 if it already finished)."""
        return self._request("POST", f"/jobs/{int(job_id)}/cancel")

    def wait(self, job_id: int, *, timeout: float | None = None, poll: float = 0.5,
             progress=None) -> dict:
        """Poll until the job finishes; return its final status.

        Parameters
        ----------
        timeout : float, optional
            Give up after this many seconds (TimeoutError).  None waits forever.
        poll : float
            Seconds between polls.
        progress : callable, optional
            Called with each status dict (e.g. to drive a progress bar).
        """
        if poll <= 0:
            raise ValueError(f"poll: must be positive, got {poll}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if progress is not None:
                progress(status)
            if status["state"] in FINISHED:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {status['state']} after {timeout} s "
                                   f"({status['frames_done']}/{status['frames_total']} frames)")
            time.sleep(poll)

    def report(self, job_id: int, *, html: bool = False, wait: float = 60.0, poll: float = 1.0):
        """The finished job's quality report: the JSON dict (docs/report.md), or the HTML page.

        The report is computed right after the job finishes; while it is on its way the server
        answers 409, and this waits up to ``wait`` seconds for it.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                if html:
                    return self._request("GET", f"/jobs/{int(job_id)}/report",
                                         params={"format": "html"}, text=True)
                return self._request("GET", f"/jobs/{int(job_id)}/report")["report"]
            except ApiError as exc:
                if exc.status != 409 or time.monotonic() >= deadline:
                    raise
                status = self.status(job_id)
                if status["state"] not in FINISHED:  # not finished: waiting is not for us
                    raise
            time.sleep(poll)

    def results(self, job_id: int):
        """Open the job's output store read-only (a ``zarr.Group``; see :func:`blockreg.open_results`)."""
        from .store import open_results

        return open_results(self.status(job_id)["output_path"])
