"""The suite's rule for missing data or optional dependencies: skip locally, fail under CI=true."""

from __future__ import annotations

import pytest

from helpers.environment import require, require_module


def test_missing_data_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no such data"):
        require(False, "no such data")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no such data.*CI=true"):
        require(False, "no such data")
    with pytest.raises(pytest.fail.Exception, match="not_a_module_anywhere"):
        require_module("not_a_module_anywhere")
    require(True, "present")  # nothing happens
    assert require_module("json").dumps([]) == "[]"
