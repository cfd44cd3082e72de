"""Where the repository, its configs and the tests are."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
CONF_DIR = ROOT / "conf"
