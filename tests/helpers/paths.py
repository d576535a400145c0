"""Where things are, for tests that read the repository's own files or the team's shared data."""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
# ../shared beside the checkout (absent in a bare clone: tests that need it skip)
SHARED_DATA = ROOT.parent / "shared" / "data"
