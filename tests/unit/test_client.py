"""blockreg.Client against the real coordinator app (Flask test client as its HTTP transport)."""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

import numpy as np
import pytest

from blockreg.client import ApiError, Client
from blockreg.registry import registered

from helpers import service_fakes as fakes


class _Response:
    def __init__(self, flask_response):
        self._r = flask_response
        self.status_code = flask_response.status_code
        self.text = flask_response.get_data(as_text=True)
        self.reason = flask_response.status

    def json(self):
        if not self._r.is_json:
            raise ValueError("not JSON")
        return self._r.get_json()


class FlaskTransport:
    """The subset of requests.Session that Client uses, served by a Flask test client."""

    def __init__(self, app, on_request=None):
        self._client = app.test_client()
        self.on_request = on_request

    def request(self, method, url, timeout=None, json=None, params=None):
        if self.on_request is not None:
            self.on_request()
        return _Response(self._client.open(urlsplit(url).path, method=method, json=json,
                                           query_string=params))


@pytest.fixture
def app(tmp_path):
    from blockreg.db.migrate import migrate
    from blockreg_services.coordinator import create_app

    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate(url)
    with registered(fakes.MEAN_SHIFT):  # the toy algorithm, whose u is easy to check
        app = create_app({"DATABASE_URL": url, "DATA_DIR": str(tmp_path / "data"),
                          "ALLOWED_ROOTS": None, "CELERY": fakes.FakeBroker()})
        yield app
        app.extensions["blockreg"].engine.dispose()


@pytest.fixture
def movie_path(tmp_path):
    path = tmp_path / "movie.npy"
    fakes.make_movie(path, shape=(6, 20, 16))
    return path


def spec_for(path):
    return {"input": {"path": str(path)}, "preprocess": {"bias": 100}, "algorithm": "mean-shift",
            "params": {"gridsize": [2, 2]}}


def drive(app):
    """One dispatcher round plus the worker running every batch sent."""
    from blockreg.orchestrate.dispatch import dispatch_once
    from blockreg.orchestrate.frames import run_frames

    services = app.extensions["blockreg"]
    with services.sessions() as session:
        sent = dispatch_once(session, services.celery, max_batches=1)
    for _, (job_id, frames), _ in services.celery.sent[-sent:] if sent else []:
        run_frames(job_id, frames, worker="w", sessions=services.sessions)


def test_submit_wait_results(app, movie_path):
    client = Client("http://coordinator.test", session=FlaskTransport(app, on_request=lambda: drive(app)))
    job_id = client.submit(spec_for(movie_path))
    seen = []
    final = client.wait(job_id, timeout=30, poll=0.01, progress=seen.append)
    assert final["state"] == "succeeded" and final["frames_done"] == 6
    # progress saw the counts grow, batch by batch
    done = [s["frames_done"] for s in seen]
    assert done == sorted(done) and done[-1] == 6 and len(set(done)) > 2
    assert [j["id"] for j in client.jobs()] == [job_id]
    assert [f["index"] for f in client.frames(job_id, limit=3, offset=2)] == [2, 3, 4]
    movie = np.load(movie_path)
    u = client.results(job_id)["u"][...]
    for t in range(6):
        np.testing.assert_allclose(u[t], fakes.expected_u(movie, t, 3, [[0, 20], [0, 16]], [2, 2], 100),
                                   rtol=1e-6)


def test_submit_accepts_a_jobspec(app, movie_path):
    from blockreg.jobspec import validate_spec

    client = Client("http://coordinator.test", session=FlaskTransport(app))
    job_id = client.submit(validate_spec(spec_for(movie_path), check_input=False))
    assert client.status(job_id)["state"] == "queued"


def test_errors_carry_status_message_and_fields(app, movie_path):
    client = Client("http://coordinator.test", session=FlaskTransport(app))
    bad = spec_for(movie_path)
    bad["params"]["gridsize"] = [50, 2]
    with pytest.raises(ApiError) as info:
        client.submit(bad)
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors] == ["params.gridsize.0"]
    assert "params.gridsize.0" in str(info.value)
    with pytest.raises(ApiError) as info:
        client.status(12345)
    assert info.value.status == 404 and "12345" in info.value.message
    job_id = client.submit(spec_for(movie_path))
    assert client.cancel(job_id)["state"] == "cancelled"
    with pytest.raises(ApiError) as info:
        client.cancel(job_id)
    assert info.value.status == 409
    assert client.wait(job_id, poll=0.01)["state"] == "cancelled"


def test_wait_timeout(app, movie_path):
    client = Client("http://coordinator.test", session=FlaskTransport(app))
    job_id = client.submit(spec_for(movie_path))  # nobody runs it
    with pytest.raises(TimeoutError, match="still queued"):
        client.wait(job_id, timeout=0.05, poll=0.01)
    with pytest.raises(ValueError, match="poll"):
        client.wait(job_id, poll=0)


def test_unreachable_server_is_a_connection_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match="cannot reach the coordinator"):
        Client(f"http://127.0.0.1:{port}", timeout=2).status(1)


def test_unreachable_server_health_is_a_connection_error():
    # health() once called requests directly and leaked requests.ConnectionError
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError, match="cannot reach the coordinator") as info:
        Client(f"http://127.0.0.1:{port}", timeout=2).health()
    assert type(info.value) is ConnectionError  # the builtin, not a requests subclass


class SilentServer:
    """A session double whose server never answers in time."""

    def request(self, method, url, timeout=None, **kwargs):
        import requests

        raise requests.ReadTimeout(f"read timed out after {timeout}")


@pytest.mark.parametrize("call", [lambda c: c.health(), lambda c: c.status(1),
                                  lambda c: c.submit({}), lambda c: c.cancel(1)])
def test_read_timeout_is_a_timeout_error(call):
    client = Client("http://slow.test", timeout=0.5, session=SilentServer())
    with pytest.raises(TimeoutError, match="did not answer") as info:
        call(client)
    assert type(info.value) is TimeoutError


def test_health_reports_a_degraded_server(app):
    client = Client("http://coordinator.test", session=FlaskTransport(app))
    assert client.health()["status"] == "ok"
    app.extensions["blockreg"].broker_reachable = lambda: False
    body = client.health()  # 503 is an answer here, not an error
    assert body["status"] == "degraded" and body["broker"] is False


def test_default_url_from_environment(monkeypatch):
    monkeypatch.setenv("BLOCKREG_SERVER", "http://lab-server:9000/")
    assert Client().url == "http://lab-server:9000"


def test_client_and_states_import_without_the_server_stack():
    # a notebook user's client needs neither SQLAlchemy nor Flask; the states are shared with them
    from helpers.imports import loaded_after

    assert loaded_after("import blockreg.client as c, blockreg.states as s\n"
                        "assert set(c.FINISHED) == {'succeeded', 'failed', 'cancelled'}\n"
                        "assert set(c.FINISHED) | set(s.ACTIVE_JOB_STATES) == set(s.JobState)",
                        ("sqlalchemy", "flask", "celery")) == []
