"""test_linkshape: scripts/linkshape, the link-shaping forwarder of the tests and the benchmark,
on real loopback and unix sockets with an echo server behind it — delay each way, order under
jitter, the rate cap, every fault of its control socket, its counters and its bounds."""

import socket
import socketserver
import subprocess
import threading
import time

import pytest

from linkshape import SCRIPT, ControlError, LinkShape

IO_TIMEOUT = 5


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.accepted += 1
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)
        except ConnectionResetError:
            self.server.resets += 1


def _serve(server):
    server.accepted = server.resets = 0
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


class _TCPEcho(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UnixEcho(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


@pytest.fixture
def echo():
    s = _serve(_TCPEcho(("127.0.0.1", 0), _Echo))
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture
def unix_echo(tmp_path):
    s = _serve(_UnixEcho(str(tmp_path / "echo.sock"), _Echo))
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture
def shaper(echo):
    """Factory: a LinkShape in front of the TCP echo server, stopped after the test."""
    made = []

    def make(**kw):
        ls = LinkShape(to=echo.server_address, seconds=120, **kw).start()
        made.append(ls)
        return ls

    yield make
    for ls in made:
        ls.stop()


def connect(ls):
    if ls.path:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        s.connect(str(ls.path))
        return s
    return socket.create_connection(ls.address, timeout=IO_TIMEOUT)


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        got = s.recv(n - len(buf))
        if not got:
            break
        buf += got
    return buf


def round_trip(s, data=b"ping"):
    t = time.monotonic()
    s.sendall(data)
    assert recv_exactly(s, len(data)) == data
    return time.monotonic() - t


def assert_closed(s):
    """The peer closed s: EOF or a reset, within the I/O deadline (a timeout fails)."""
    try:
        assert s.recv(65536) == b""
    except ConnectionResetError:
        pass


def test_delay_applies_each_way_and_changes_at_run_time(shaper):
    ls = shaper(delay_ms=40)
    with connect(ls) as s:
        rtts = [round_trip(s) for _ in range(5)]
        assert min(rtts) >= 0.080, rtts            # 40 ms one way, both ways
        assert sorted(rtts)[2] < 0.080 + 0.5, rtts
        ls.delay(0)
        fast = [round_trip(s) for _ in range(5)]
        assert min(fast) < 0.040, fast


def test_jitter_keeps_order(shaper):
    ls = shaper(delay_ms=1, jitter_ms=30)
    records = [b"%07d\n" % i for i in range(120)]
    with connect(ls) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for r in records:   # one chunk each, so each gets its own random delay
            s.sendall(r)
            time.sleep(0.002)
        got = recv_exactly(s, 8 * len(records))
    assert got == b"".join(records)
    st = ls.stats()
    assert st["up_bytes"] == st["down_bytes"] == 960
    assert st["jitter_ms"] == 30
    ls.delay(0)
    ls.jitter(60)        # each way uniform(0, 60 ms): a round trip averages 60 ms
    with connect(ls) as s:
        rtts = [round_trip(s) for _ in range(8)]
    assert sum(rtts) / len(rtts) >= 0.030, rtts


def test_rate_cap_is_roughly_honoured(shaper):
    size = 300_000
    ls = shaper(rate="4mbit")    # 500 kB/s each way
    with connect(ls) as s:
        t = time.monotonic()
        sender = threading.Thread(target=s.sendall, args=(b"r" * size,), daemon=True)
        sender.start()
        got = recv_exactly(s, size)
        took = time.monotonic() - t
        sender.join(IO_TIMEOUT)
    assert len(got) == size
    assert took >= 0.5, took          # 0.6 s at the cap (the two directions overlap)
    assert took < 4, took
    ls.rate(None)
    with connect(ls) as s:
        t = time.monotonic()
        sender = threading.Thread(target=s.sendall, args=(b"r" * size,), daemon=True)
        sender.start()
        assert len(recv_exactly(s, size)) == size
        sender.join(IO_TIMEOUT)
        assert time.monotonic() - t < took


def test_cut_closes_every_live_connection(shaper):
    ls = shaper()
    a, b = connect(ls), connect(ls)
    with a, b:
        round_trip(a)
        round_trip(b)
        assert ls.stats()["conns_live"] == 2
        ls.cut()
        assert_closed(a)
        assert_closed(b)
    assert ls.wait_conns_live(0)["conns_live"] == 0
    with connect(ls) as c:     # the link itself stays up
        round_trip(c)


def test_cut_after_counts_both_directions(shaper, echo):
    ls = shaper()
    with connect(ls) as live:
        round_trip(live, b"x" * 10)
        ls.cut_after(100)
        live.sendall(b"a" * 60)           # 60 up, then only 40 of the echo come back
        assert recv_exactly(live, 100) == b"a" * 40
    st = ls.wait_conns_live(0)
    assert (st["up_bytes"], st["down_bytes"]) == (70, 50)
    with connect(ls) as new:              # a new connection gets the same budget from its start
        new.sendall(b"b" * 200)
        assert_closed(new)
    assert ls.wait_conns_live(0)["up_bytes"] == 170
    ls.cut_after(None)
    with connect(ls) as free:
        round_trip(free, b"c" * 10_000)


def test_blackhole_holds_everything_then_flows_again(shaper, echo):
    ls = shaper()
    with connect(ls) as old:
        round_trip(old)
        ls.blackhole(True)
        old.sendall(b"held")
        new = connect(ls)                  # accepted, but never reaches the server
        new.sendall(b"new")
        for s in (old, new):
            s.settimeout(0.3)
            with pytest.raises(socket.timeout):
                s.recv(10)
            s.settimeout(IO_TIMEOUT)
        st = ls.stats()
        assert (st["up_bytes"], st["conns_live"], st["blackhole"]) == (4, 2, True)
        assert echo.accepted == 1
        ls.blackhole(False)
        with new:
            assert recv_exactly(old, 4) == b"held"
            assert recv_exactly(new, 3) == b"new"
        assert echo.accepted == 2


def test_reset_sends_rst_both_ways(shaper, echo):
    ls = shaper()
    with connect(ls) as s:
        round_trip(s)
        ls.reset()
        with pytest.raises(ConnectionResetError):
            s.recv(10)
    deadline = time.monotonic() + IO_TIMEOUT
    while echo.resets == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert echo.resets == 1


def test_refuse_refuses_new_connections_only(shaper):
    ls = shaper()
    with connect(ls) as live:
        ls.refuse(True)
        with pytest.raises(ConnectionRefusedError):
            connect(ls)
        round_trip(live)
        assert ls.stats()["refuse"] is True
        ls.refuse(False)
        with connect(ls) as again:
            round_trip(again)


def test_stats_count_bytes_and_connections(shaper):
    ls = shaper()
    with connect(ls) as a, connect(ls) as b:
        round_trip(a, b"1" * 1000)
        round_trip(b, b"2" * 2345)
        round_trip(a, b"3" * 5)
        assert ls.stats()["conns_live"] == 2
    st = ls.wait_conns_live(0)
    assert st["up_bytes"] == st["down_bytes"] == 3350
    assert (st["conns_total"], st["conns_live"], st["refused"]) == (2, 0, 0)


def test_unix_socket_link(unix_echo):
    with LinkShape(to=unix_echo.server_address, listen="unix", delay_ms=20, seconds=60) as ls:
        with connect(ls) as s:
            assert round_trip(s, b"u" * 70_000) >= 0.040
            ls.cut()
            assert_closed(s)
        with connect(ls) as s:
            round_trip(s)
        ls.refuse(True)
        with pytest.raises(ConnectionRefusedError):
            connect(ls)
    assert not ls.path.exists()


def test_bounds_and_bad_input(echo):
    p = subprocess.run([SCRIPT, "--listen", "tcp:0.0.0.0:1", "--to", "tcp:127.0.0.1:2"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "loopback" in p.stderr
    with LinkShape(to=echo.server_address, extra=["--max-conns", "2"], seconds=60) as ls:
        a, b, c = connect(ls), connect(ls), connect(ls)
        with a, b, c:
            round_trip(a)
            round_trip(b)
            assert_closed(c)
        assert ls.stats()["refused"] == 1
        with pytest.raises(ControlError):
            ls.ctl("bogus")
        with pytest.raises(ControlError):
            ls.ctl("delay 1e9")
        with socket.socket(socket.AF_UNIX) as s:   # an over-long line: dropped, nothing else
            s.settimeout(IO_TIMEOUT)
            s.connect(str(ls.ctl_path))
            s.sendall(b"x" * 4096 + b"\n")
            assert_closed(s)
        assert ls.stats()["delay_ms"] == 0


def test_ctl_command_line(shaper):
    ls = shaper()
    p = subprocess.run([SCRIPT, "ctl", ls.ctl_path, "delay", "7"], capture_output=True,
                       text=True, timeout=30)
    assert (p.returncode, p.stdout) == (0, "")
    assert ls.stats()["delay_ms"] == 7
    p = subprocess.run([SCRIPT, "ctl", ls.ctl_path, "blackhole", "maybe"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1 and "want on or off" in p.stderr


def test_seconds_stops_it_and_removes_its_sockets(unix_echo, tmp_path):
    sock, ctl = tmp_path / "in.sock", tmp_path / "ctl"
    t = time.monotonic()
    p = subprocess.run([SCRIPT, "--listen", f"unix:{sock}", "--to",
                        f"unix:{unix_echo.server_address}", "--control", f"unix:{ctl}",
                        "--seconds", "0.5"],
                       capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stdout) == (0, "ready\n"), p.stderr
    assert time.monotonic() - t >= 0.5
    assert not sock.exists() and not ctl.exists()
