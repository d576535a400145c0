"""What a piece of code imports, seen from a fresh interpreter (the layer and import-weight tests)."""
from __future__ import annotations

import json
import subprocess
import sys

from .paths import TESTS

# what a library user or a worker must never pay for unless it asks for the server
SERVER_STACK = ("flask", "celery", "sqlalchemy", "alembic", "kombu", "waitress", "redis")


def loaded_after(code: str, watched=SERVER_STACK) -> list[str]:
    """Run ``code`` in a new Python process; return the ``watched`` top-level packages it loaded.

    ``code`` may assert things of its own: a failure is reported with the child's stderr.
    """
    probe = (f"{code}\nimport sys, json\n"
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(watched)!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=TESTS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
