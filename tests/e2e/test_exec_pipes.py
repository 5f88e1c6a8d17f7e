"""sandexec in a local pipeline: when the local reader of its output goes away, the remote
command gets SIGPIPE (exit 141), as it would locally, instead of running on forever."""

import subprocess
import time

from helpers import SANDEXEC


def test_reader_gone_sends_sigpipe(suite, mnt):
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-c", f"'{SANDEXEC}' -- sh -c 'yes' | head -n 3; "
                        "echo status=${PIPESTATUS[0]}"],
                       cwd=mnt.mp, env=suite.env, capture_output=True, timeout=60)
    took = time.monotonic() - t0
    assert p.stdout.decode().splitlines() == ["y", "y", "y", "status=141"], p
    assert took < 30, f"the remote command kept running {took:.1f}s after head exited"
