"""Runs last: no AddressSanitizer / UndefinedBehaviorSanitizer report was written by any
sandmount or sandexec process (daemons included) during the suite."""

from pathlib import Path

import helpers as h


def test_binaries_are_sanitized_build():
    # the suite is meant to run against build-asan; say so when it does not
    data = Path(h.SANDMOUNT).read_bytes()
    assert b"__asan_init" in data or b"AddressSanitizer" in data, \
        f"{h.SANDMOUNT} is not an ASan build (set SM_E2E_BUILD to the build-asan dir)"


def test_no_sanitizer_reports(suite):
    reports = suite.sanitizer_reports()
    text = "\n".join(f"--- {r}\n{Path(r).read_text(errors='replace')[:4000]}" for r in reports)
    assert not reports, f"sanitizer reports:\n{text}"
