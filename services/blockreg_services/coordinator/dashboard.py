"""The web dashboard: ``/`` serves one page whose ES modules (``static/``) talk to ``/api/v1``.

Everything the browser loads ships in the package (no CDN, no build step), so the dashboard works on
a lab network without internet. The pages use only the public REST API, so anything a person does
in the browser a script can do with :class:`blockreg.Client`; a route the pages need is added to
the API (:mod:`.browse`, :mod:`.tune`), never to this blueprint.
"""
from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("dashboard", __name__, static_folder="static", static_url_path="/static",
               template_folder="templates")


@bp.get("/")
def index():
    """The single page; the modules route between the job list, submit, job, tune and login views."""
    return render_template("dashboard.html", version=current_app.config["VERSION"])
