"""The dashboard on a server with users: the login form, then each user's own jobs."""
from __future__ import annotations

import pytest
import requests

from helpers.browser import open_page, stack_env, write_movie

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory, browser):
    from blockreg import users
    from blockreg.db import make_engine, session_factory
    from blockreg_services.embedded import EmbeddedStack

    home = tmp_path_factory.mktemp("dashboard-auth")
    data = home / "data"
    data.mkdir()
    movie = write_movie(data / "movie.tif", 6)
    with EmbeddedStack(home, port=0, workers=1, env=stack_env(data, BLOCKREG_AUTH="1"),
                       stop_timeout=20) as stack:
        engine = make_engine(stack.database_url)
        with session_factory(engine)() as session:
            tokens = {name: users.add_user(session, name)[1] for name in ("alice", "bob")}
        engine.dispose()
        for name, token in tokens.items():
            spec = {"name": f"{name}'s job", "input": {"path": str(movie)},
                    "params": {"gridsize": [2, 2], "maxshift": [2, 2], "lambda": 0.01}}
            response = requests.post(f"{stack.url}/api/v1/jobs", json=spec, timeout=30,
                                     headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 201, response.text
        yield stack, tokens


def test_login_then_a_user_sees_only_their_jobs_and_can_log_out(browser, auth_stack):
    stack, tokens = auth_stack
    context, page, watch = open_page(browser, stack.url)
    page.goto("/#/jobs")
    token = page.get_by_label("API token")
    token.wait_for()
    token.fill("wrong")
    token.press("Enter")  # the keyboard alone logs in
    page.locator("#login-error", has_text="not valid").wait_for()
    token.fill(tokens["alice"])
    token.press("Enter")
    page.locator("table.jobs td.name", has_text="alice's job").wait_for()
    assert page.locator("table.jobs tbody tr").count() == 1
    assert page.locator("table.jobs tbody tr td").nth(3).inner_text() == "alice"  # the owner
    assert page.locator("text=bob's job").count() == 0
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("API token").wait_for()
    assert page.evaluate("sessionStorage.getItem('blockreg.token')") is None
    context.close()
    assert watch.problems == [], "\n".join(watch.problems)
