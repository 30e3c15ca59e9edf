"""Black-box tests of the supervisor (switchboard) and switchboardctl's supervisor commands.

Hermetic: the workers are fake_worker.py, installed under the real binary names in a
temporary libexec folder (SWITCHBOARD_LIBEXEC_DIR), and driven by mode files; the
listeners are on loopback with kernel-chosen ports. What is checked is the supervisor's
side of the contract in shared/proc.h, its restart policy, its control socket, reload,
and the stop sequence. Run: SB_BIN=build/bin python3 -m pytest tests/proto/test_supervisor.py
"""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from sbtree import pid_alive, wait_for

BIN = os.environ.get("SB_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_worker.py")


class Sup:
    """One supervisor on a generated configuration, with fake workers."""

    def __init__(self, folder, workers=("xmpp",), fakes=("broker", "store", "xmpp", "mqtt"),
                 stop_timeout_ms=1000, intensity=3):
        self.folder = str(folder)
        self.state = os.path.join(self.folder, "state")
        self.libexec = os.path.join(self.folder, "libexec")
        self.config = os.path.join(self.folder, "switchboard.yml")
        self.log_path = os.path.join(self.folder, "supervisor.log")
        self.control_path = os.path.join(self.state, "run", "control.sock")
        self.proc = None
        os.makedirs(self.libexec, exist_ok=True)
        for kind in fakes:
            path = os.path.join(self.libexec, f"switchboard-{kind}")
            with open(path, "w") as f:
                f.write("#!/bin/sh\n"
                        # Builtins only: a child process would see the shell's mask while it waits.
                        "while read -r l; do case $l in Sig*) echo \"$l\";; esac; done"
                        " < /proc/$$/status > \"${0%/*}/${0##*/switchboard-}.$$.sig\"\n"
                        f"exec /usr/bin/python3 {FAKE} \"$0\" \"$@\"\n")
            os.chmod(path, 0o755)
        self.stop_timeout_ms = stop_timeout_ms
        self.intensity = intensity
        self.write_config(workers)

    def write_config(self, workers, listeners=None, extra=""):
        """workers: enabled protocol workers; listeners: {worker: [(name, port), ...]}."""
        listeners = listeners or {}
        lines = [
            "hosts: [example.org]",
            f"state_dir: {self.state}",
            "supervisor: {backoff_min_ms: 100, backoff_max_ms: 400,"
            f" stop_timeout_ms: {self.stop_timeout_ms}, restart_intensity: {self.intensity},"
            " restart_period: 60}",
            "workers:",
        ]
        for kind in workers:
            ls = listeners.get(kind, [("plain", 0), ("six", 0)])
            lines += [f"  {kind}:", "    enabled: true", "    listeners:"]
            for name, port in ls:
                address = "'::1'" if name == "six" else "127.0.0.1"
                lines.append(f"      - {{name: {name}, address: {address}, port: {port}}}")
        lines.append(extra)
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def mode(self, kind, mode):
        with open(os.path.join(self.libexec, f"{kind}.mode"), "w") as f:
            f.write(mode)

    def start(self, wait=("broker", "store", "xmpp")):
        env = dict(os.environ, SWITCHBOARD_LIBEXEC_DIR=self.libexec)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "switchboard"), "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_state(wait, "running")
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def control(self, command, raw=None):
        """(ok, data lines or error) for one command on the control socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.control_path)
            s.sendall(raw if raw is not None else command.encode() + b"\n")
            if raw is not None and not raw.endswith(b"\n"):
                s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.decode().split("\n")
        assert lines[-1] == "", f"reply not newline-terminated: {data!r}"
        lines = lines[:-1]
        if lines[-1] == "OK":
            return True, lines[:-1]
        assert lines[-1].startswith("ERR "), lines
        return False, lines[-1][4:]

    def status(self):
        ok, lines = self.control("status")
        assert ok, lines
        workers, listeners = {}, {}
        for line in lines:
            f = line.split("\t")
            if f[0] == "listener":
                assert len(f) == 4, line
                m = re.fullmatch(r"(.+):(\d+)/(tcp|udp)", f[3])
                assert m, line
                listeners[(f[1], f[2])] = (m.group(1).strip("[]"), int(m.group(2)), m.group(3))
            else:
                assert len(f) == 6, line
                workers[f[0]] = {"state": f[1], "pid": int(f[2]) if f[2] != "-" else None,
                                 "uptime": f[3], "restarts": int(f[4]),
                                 "connections": int(f[5])}
        return workers, listeners

    def workers(self):
        return self.status()[0]

    def wait_state(self, names, state, timeout=10):
        def check():
            try:
                ws = self.workers()
            except OSError:
                return None
            return ws if all(ws.get(n, {}).get("state") == state for n in names) else None
        return wait_for(check, timeout, what=f"{names} {state}; log:\n{self.log_text()}")

    def records(self, kind):
        """What each started fake of this kind inherited, oldest first."""
        out = []
        for path in glob.glob(os.path.join(self.libexec, f"{kind}.*.json")):
            with open(path) as f:
                rec = json.load(f)
            rec["pid"] = int(path.rsplit(".", 2)[1])
            out.append(rec)
        return sorted(out, key=lambda r: r["time"])

    def ctl(self, *args, timeout=60):
        return subprocess.run([os.path.join(BIN, "switchboardctl"), "--config", self.config,
                               *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def sup(tmp_path):
    s = Sup(tmp_path)
    yield s
    s.stop()


def test_check_config(tmp_path):
    s = Sup(tmp_path)
    r = subprocess.run([os.path.join(BIN, "switchboard"), "--config", s.config,
                        "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "configuration OK", r
    with open(s.config, "a") as f:
        f.write("no_such_key: 1\n")
    for extra in (["--check-config"], []):
        r = subprocess.run([os.path.join(BIN, "switchboard"), "--config", s.config, *extra],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 78
        assert re.search(re.escape(s.config) + r":\d+: .*no_such_key", r.stderr), r.stderr
    assert not os.path.exists(s.state)  # nothing was started


def test_worker_contract_and_status(sup):
    sup.start()
    ws, ls = sup.status()
    assert set(ws) == {"broker", "store", "xmpp"}
    for name, w in ws.items():
        assert w["state"] == "running" and pid_alive(w["pid"]) and w["restarts"] == 0, ws
    # Port 0 listeners: the kernel's port is shown, and it is listening already.
    assert set(ls) == {("xmpp", "plain"), ("xmpp", "six")}
    addr, port, transport = ls[("xmpp", "plain")]
    assert addr == "127.0.0.1" and port != 0 and transport == "tcp"
    assert ls[("xmpp", "six")][0] == "::1" and ls[("xmpp", "six")][1] != 0
    socket.create_connection((addr, port), timeout=5).close()

    # The broker started first, and the others only after it was READY.
    log = sup.log_text()
    assert log.index("broker (pid") < log.index("is ready") < log.index("started store")

    rec = sup.records("xmpp")[-1]
    assert rec["pid"] == ws["xmpp"]["pid"]
    assert rec["argv"][1:] == ["--config", sup.config]
    fds = rec["fds"]
    # 0-2 inherited, 3 the life pipe (read end), 4 the status pipe (write end), 5-6 sockets,
    # and nothing else.
    assert sorted(int(fd) for fd in fds) == [0, 1, 2, 3, 4, 5, 6], fds
    assert fds["3"] == {"kind": "pipe", "flags": os.O_RDONLY}
    assert fds["4"] == {"kind": "pipe", "flags": os.O_WRONLY}
    assert fds["5"]["kind"] == "socket" and fds["6"]["kind"] == "socket"
    assert rec["env"]["SWITCHBOARD_SUPERVISED"] == "1"
    assert rec["env"]["SWITCHBOARD_LISTEN_FDS"] == "plain=5 six=6"
    assert int(rec["sigblk"], 16) == 0 and int(rec["sigign"], 16) == 0
    broker = sup.records("broker")[-1]
    assert sorted(int(fd) for fd in broker["fds"]) == [0, 1, 2, 3, 4]
    assert broker["env"]["SWITCHBOARD_LISTEN_FDS"] == ""

    # The control socket is private.
    assert os.stat(sup.control_path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(sup.state, "run")).st_mode & 0o777 == 0o700


def test_connections_from_the_status_pipe(sup):
    with open(os.path.join(sup.libexec, "xmpp.conns"), "w") as f:
        f.write("42")
    sup.start()
    wait_for(lambda: sup.workers()["xmpp"]["connections"] == 42, what="CONNS 42")


def test_crash_restarts_at_once_then_fails_after_intensity(sup):
    sup.start()
    pids = [sup.workers()["xmpp"]["pid"]]
    for i in range(3):
        os.kill(pids[-1], signal.SIGSEGV if i == 0 else signal.SIGKILL)
        ws = wait_for(lambda: (w := sup.workers())["xmpp"]["pid"] not in (None, *pids)
                      and w["xmpp"]["state"] == "running" and w, what="xmpp restarted")
        assert ws["xmpp"]["restarts"] == i + 1
        pids.append(ws["xmpp"]["pid"])
    assert re.search(r"xmpp \(pid %d\) crashed after [\d.]+ s: killed by signal 11 \(SIGSEGV\); "
                     r"restarting now" % pids[0], sup.log_text())
    # The fourth crash within the period: failed; the others keep running.
    os.kill(pids[-1], signal.SIGKILL)
    ws = wait_for(lambda: (w := sup.workers())["xmpp"]["state"].startswith("failed") and w,
                  what="xmpp failed")
    assert ws["xmpp"]["state"] == "failed(crashed 4 times within 60 s)"
    assert ws["xmpp"]["pid"] is None
    assert ws["broker"]["state"] == ws["store"]["state"] == "running"
    time.sleep(0.5)
    assert sup.workers()["xmpp"]["state"].startswith("failed")
    # start clears it.
    ok, _ = sup.control("start xmpp")
    assert ok
    sup.wait_state(["xmpp"], "running")
    ok, lines = sup.control("stats")
    stats = dict(line.split("=", 1) for line in lines)
    assert stats["crashes"] == "4" and stats["restarts.xmpp"] == "4", stats
    assert stats["failures"] == "1" and stats["starts"] == "7", stats


def test_death_before_ready_backs_off(sup):
    sup.mode("xmpp", "fail")
    sup.start(wait=("broker", "store"))
    wait_for(lambda: len(sup.records("xmpp")) >= 4, what="four attempts")
    times = [r["time"] for r in sup.records("xmpp")[:4]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # 100, 200, 400 ms (plus start-up time): doubling, capped at backoff_max_ms = 400.
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.39, gaps
    assert re.search(r"xmpp \(pid \d+\) died before it was ready: exited with status 1; "
                     r"restarting in 100 ms", sup.log_text())
    assert "restarting in 400 ms" in sup.log_text()
    assert "restarting in 800 ms" not in sup.log_text()
    # Never marked failed for early deaths; shown as backoff or starting.
    assert sup.workers()["xmpp"]["state"] in ("backoff", "starting")
    # Once it can start, it runs.
    sup.mode("xmpp", "ready")
    sup.wait_state(["xmpp"], "running")


def test_exit_78_is_failed_and_start_retries(sup):
    sup.mode("xmpp", "exit78")
    sup.start(wait=("broker", "store"))
    ws = wait_for(lambda: (w := sup.workers())["xmpp"]["state"].startswith("failed") and w,
                  what="xmpp failed")
    assert ws["xmpp"]["state"] == "failed(configuration error (exit 78))"
    time.sleep(0.5)
    assert len(sup.records("xmpp")) == 1  # not restarted
    sup.mode("xmpp", "ready")
    r = sup.ctl("start", "xmpp")
    assert r.returncode == 0, r.stderr
    sup.wait_state(["xmpp"], "running")


def test_missing_binary_fails_only_that_worker(tmp_path):
    s = Sup(tmp_path, workers=("xmpp", "mqtt"), fakes=("broker", "store", "xmpp"))
    try:
        s.start(wait=("broker", "store", "xmpp"))
        ws = s.wait_state(["mqtt"], "failed(binary not found)")
        assert ws["mqtt"]["pid"] is None
        assert "switchboard-mqtt: binary not found" in s.log_text()
    finally:
        s.stop()


def test_broker_not_ready_others_start_after_a_wait(sup):
    sup.mode("broker", "noready")
    sup.start(wait=None)
    sup.wait_state(["broker"], "starting")
    time.sleep(1)
    ws = sup.workers()
    assert ws["store"]["pid"] is None and ws["xmpp"]["pid"] is None, ws
    sup.wait_state(["store", "xmpp"], "running", timeout=10)
    assert "the broker is not ready after 5000 ms; starting store anyway" in sup.log_text()


def test_stop_start_restart_commands(sup):
    sup.start()
    ws = sup.workers()
    r = sup.ctl("stop", "xmpp")
    assert r.returncode == 0, r.stderr
    ws2 = sup.wait_state(["xmpp"], "stopped")
    assert not pid_alive(ws["xmpp"]["pid"]) and ws2["xmpp"]["pid"] is None
    time.sleep(0.3)
    assert sup.workers()["xmpp"]["state"] == "stopped"  # a requested stop stays stopped
    assert "crashed" not in sup.log_text()
    assert sup.ctl("start", "xmpp").returncode == 0
    ws3 = sup.wait_state(["xmpp"], "running")
    assert sup.ctl("restart", "store").returncode == 0
    ws4 = wait_for(lambda: (w := sup.workers())["store"]["pid"] not in (None, ws["store"]["pid"])
                   and w["store"]["state"] == "running" and w, what="store restarted")
    assert ws4["xmpp"]["pid"] == ws3["xmpp"]["pid"] and ws4["broker"]["pid"] == ws["broker"]["pid"]
    assert ws4["store"]["restarts"] == 1
    ok, stats = sup.control("stats")
    assert ok and "crashes=0" in stats
    # Errors.
    r = sup.ctl("restart", "sip")
    assert r.returncode == 1 and "sip is not enabled" in r.stderr
    r = sup.ctl("restart", "nosuch")
    assert r.returncode == 2
    assert sup.control("restart nosuch") == (False, 'unknown worker "nosuch"')
    assert sup.control("restart") == (False, "missing worker name")


def test_stop_timeout_escalates_to_sigkill(tmp_path):
    s = Sup(tmp_path, stop_timeout_ms=300)
    s.mode("xmpp", "ignoreterm")
    try:
        s.start()
        pid = s.workers()["xmpp"]["pid"]
        assert s.ctl("stop", "xmpp").returncode == 0
        s.wait_state(["xmpp"], "stopped")
        assert not pid_alive(pid)
        assert re.search(r"xmpp \(pid %d\) did not stop within 300 ms; sending SIGKILL" % pid,
                         s.log_text())
    finally:
        s.stop()


def test_control_socket_protocol(sup):
    sup.start()
    assert sup.control("frobnicate") == (False, 'unknown command "frobnicate"')
    assert sup.control("status extra")[0] is False
    assert sup.control("", raw=b"\n") == (False, "empty request")
    # No newline before EOF still counts as a request.
    ok, lines = sup.control("", raw=b"status")
    assert ok and any(line.startswith("broker\t") for line in lines)
    # Bounded requests.
    ok, err = sup.control("", raw=b"x" * 5000)
    assert not ok and err == "request too long"
    # Several clients at once: idle ones do not block a status.
    idle = []
    for _ in range(5):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(sup.control_path)
        idle.append(c)
    c.sendall(b"sta")  # a partial request in progress
    assert sup.control("status")[0]
    c.sendall(b"ts\n")
    c.settimeout(5)
    data = b""
    while not data.endswith(b"OK\n"):
        chunk = c.recv(4096)
        assert chunk
        data += chunk
    assert b"starts=" in data
    for c in idle:
        c.close()


def test_reload(sup):
    sup.start()
    before, ls_before = sup.status()

    # An invalid file: reported, nothing changes.
    with open(sup.config) as f:
        good = f.read()
    with open(sup.config, "a") as f:
        f.write("bogus_key: 1\n")
    ok, err = sup.control("reload")
    assert not ok and "bogus_key" in err
    # switchboardctl reads the same file (to find the socket), and refuses it.
    r = sup.ctl("reload")
    assert r.returncode == 78 and "bogus_key" in r.stderr
    with open(sup.config, "w") as f:
        f.write(good)
    assert {k: w["pid"] for k, w in sup.workers().items()} == \
        {k: w["pid"] for k, w in before.items()}
    assert sup.status()[1] == ls_before

    # The same file: nothing restarted, listeners kept.
    ok, _ = sup.control("reload")
    assert ok
    time.sleep(0.3)
    after, ls_after = sup.status()
    assert {k: w["pid"] for k, w in after.items()} == {k: w["pid"] for k, w in before.items()}
    assert ls_after == ls_before

    # A listener added to xmpp: only xmpp restarts; the kept listener keeps its port.
    sup.write_config(["xmpp"], listeners={"xmpp": [("plain", 0), ("six", 0), ("more", 0)]})
    os.kill(sup.proc.pid, signal.SIGHUP)
    ws = wait_for(lambda: (w := sup.workers())["xmpp"]["pid"] not in (None, before["xmpp"]["pid"])
                  and w["xmpp"]["state"] == "running" and w, what="xmpp restarted")
    assert ws["broker"]["pid"] == before["broker"]["pid"]
    assert ws["store"]["pid"] == before["store"]["pid"]
    ls = sup.status()[1]
    assert ls[("xmpp", "plain")] == ls_before[("xmpp", "plain")]
    assert ("xmpp", "more") in ls
    assert sup.records("xmpp")[-1]["env"]["SWITCHBOARD_LISTEN_FDS"] == "plain=5 six=6 more=7"
    assert "crashed" not in sup.log_text()

    # Enabling mqtt starts it; disabling xmpp stops it and closes its sockets.
    xmpp_pid = sup.workers()["xmpp"]["pid"]
    sup.write_config(["mqtt"])
    r = sup.ctl("reload")
    assert r.returncode == 0, r.stderr
    sup.wait_state(["mqtt"], "running")
    wait_for(lambda: "xmpp" not in sup.workers(), what="xmpp gone from status")
    assert not pid_alive(xmpp_pid)
    assert re.search(r"xmpp \(pid %d\) stopped" % xmpp_pid, sup.log_text())
    ls = sup.status()[1]
    assert set(ls) == {("mqtt", "plain"), ("mqtt", "six")}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ls_before[("xmpp", "plain")][1]), timeout=2)

    # A listener that cannot be bound: the reload is refused as a whole.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    mqtt_pid = sup.workers()["mqtt"]["pid"]
    sup.write_config(["mqtt"], listeners={"mqtt": [("plain", 0), ("six", 0), ("busy", port)]})
    ok, err = sup.control("reload")
    busy.close()
    assert not ok and f"listener mqtt/busy: cannot bind 127.0.0.1:{port}/tcp" in err, err
    time.sleep(0.3)
    assert sup.workers()["mqtt"]["pid"] == mqtt_pid
    assert ("mqtt", "busy") not in sup.status()[1]


def test_sigterm_stops_in_reverse_order_and_leaves_nothing(tmp_path):
    s = Sup(tmp_path, workers=("xmpp", "mqtt"))
    s.start(wait=("broker", "store", "xmpp", "mqtt"))
    pids = {k: w["pid"] for k, w in s.workers().items()}
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=30) == 0
    s.log.close()
    for pid in pids.values():
        assert not pid_alive(pid)
    log = s.log_text()
    stopped = {k: log.index(f"{k} (pid {pid}) stopped") for k, pid in pids.items()}
    assert max(stopped["xmpp"], stopped["mqtt"]) < stopped["store"] < stopped["broker"], log
    # The store is asked to stop only after the protocol workers are gone.
    assert stopped["xmpp"] < log.index("stopping store")
    assert "crashed" not in log
    assert not os.path.exists(s.control_path)
    r = s.ctl("status")
    assert r.returncode == 3 and "not running" in r.stderr


def test_workers_exit_when_the_supervisor_dies(sup):
    sup.start()
    pids = [w["pid"] for w in sup.workers().values()]
    sup.proc.kill()
    sup.proc.wait()
    for pid in pids:
        wait_for(lambda: not pid_alive(pid), what=f"orphan {pid} exits")


def test_one_supervisor_per_state_dir(sup):
    sup.start()
    r = subprocess.run([os.path.join(BIN, "switchboard"), "--config", sup.config],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, SWITCHBOARD_LIBEXEC_DIR=sup.libexec))
    assert r.returncode == 1
    assert f"another switchboard supervisor (pid {sup.proc.pid}) is running on {sup.state}" \
        in r.stderr
    # The first one is undisturbed.
    assert sup.control("status")[0]


def test_bind_failure_names_the_listener(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    s = Sup(tmp_path)
    s.write_config(["xmpp"], listeners={"xmpp": [("c2s", port)]})
    r = subprocess.run([os.path.join(BIN, "switchboard"), "--config", s.config],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, SWITCHBOARD_LIBEXEC_DIR=s.libexec))
    busy.close()
    assert r.returncode == 78
    assert f"listener xmpp/c2s: cannot bind 127.0.0.1:{port}/tcp: Address already in use" \
        in r.stderr, r.stderr
    assert not glob.glob(os.path.join(s.libexec, "*.json"))  # no worker was started


def test_switchboardctl_supervisor_commands(sup):
    r = sup.ctl("status")
    assert r.returncode == 3 and "not running" in r.stderr
    sup.start()
    r = sup.ctl("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["WORKER", "STATE", "PID", "UPTIME", "RESTARTS", "CONNECTIONS"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert set(rows) == {"broker", "store", "xmpp"}
    assert rows["xmpp"][1] == "running" and rows["xmpp"][2] == str(sup.workers()["xmpp"]["pid"])
    # Aligned: every row's second column starts where the header's does.
    col = lines[0].index("STATE")
    assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines[1:4])
    assert any(line.startswith("xmpp/plain") and "127.0.0.1:" in line for line in lines)
    assert sup.ctl().returncode == 2
    assert sup.ctl("status", "extra").returncode == 2
    assert sup.ctl("frobnicate").returncode == 2
    assert sup.ctl("stop").returncode == 2
    r = sup.ctl("--help")
    assert r.returncode == 0 and "Exit status" in r.stdout
    r = subprocess.run([os.path.join(BIN, "switchboardctl"), "--config",
                        os.path.join(sup.folder, "missing.yml"), "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78


def test_switchboardctl_broker_commands_without_a_broker(sup):
    # The fake broker never answers on the ZeroMQ endpoint: retried until --timeout, then 3.
    sup.start()
    start = time.monotonic()
    r = subprocess.run([os.path.join(BIN, "switchboardctl"), "--config", sup.config,
                        "--timeout", "2", "register", "alice", "example.org"],
                       input="secret\n", capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "broker/store unavailable" in r.stderr, r
    assert 2 <= time.monotonic() - start < 10
    # A password is required: an empty line or none at all is refused before any request.
    for given in ("\n", ""):
        r = subprocess.run([os.path.join(BIN, "switchboardctl"), "--config", sup.config,
                            "--timeout", "1", "passwd", "alice", "example.org"],
                           input=given, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "password" in r.stderr, r
    # stats: the supervisor's counters are printed before the broker's part fails.
    r = sup.ctl("--timeout", "1", "stats")
    assert r.returncode == 3
    assert "supervisor.starts=3" in r.stdout.splitlines()
    assert sup.ctl("--timeout", "0", "stats").returncode == 2
