"""Jobs name their owner (the dashboard's job list shows it); single-user jobs have none."""
from __future__ import annotations

from blockreg import users

from helpers.api_app import toy_spec_for


def test_listing_and_job_name_the_owner(app, client, movie_path, tmp_path):
    anonymous = client.post("/api/v1/jobs", json=toy_spec_for(movie_path)).json["id"]
    app.config.update(AUTH=True, ALLOWED_ROOTS=[str(tmp_path)])
    with app.extensions["blockreg"].sessions() as session:
        token = users.add_user(session, "alice")[1]
        root = users.add_user(session, "root", admin=True)[1]
    spec = toy_spec_for(movie_path, output={"path": str(tmp_path / "a.zarr")})
    mine = client.post("/api/v1/jobs", json=spec, headers={"Authorization": f"Bearer {token}"})
    job_id = mine.json["id"]
    listing = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {root}"}).json
    assert {j["id"]: j["owner"] for j in listing["jobs"]} == {job_id: "alice", anonymous: None}
    job = client.get(f"/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}).json
    assert job["owner"] == "alice"
