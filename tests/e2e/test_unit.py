"""The unit tests' verdict (scripts/test runs `meson test` first and passes its result in
SM_UNIT_RC), so that pytest's summary line covers the whole run."""

import os

import pytest


def test_unit_tests_passed():
    rc = os.environ.get("SM_UNIT_RC")
    if rc is None:
        pytest.skip("run through scripts/test to include the unit tests")
    assert rc == "0", "meson test failed (see its output above the e2e suite)"
