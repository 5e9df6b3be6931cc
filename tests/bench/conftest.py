"""bench/ holds scripts, not a package: its modules are imported with bench/ on sys.path, as running them does."""

import sys

from tests.conftest import REPO

if str(REPO / "bench") not in sys.path:
    sys.path.insert(0, str(REPO / "bench"))
