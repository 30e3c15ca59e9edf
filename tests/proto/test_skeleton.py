"""Black-box tests of the worker skeleton (workers/worker.h) through switchboard-echo.

The broker and echo workers run by hand, without the supervisor, so that
each promise of the skeleton is tested on its own: line input with a cap,
idle and handshake timeouts, the output cap for slow readers, direct TLS and
STARTTLS, the connection limit, routing between two workers through the
broker, re-announcing after a broker restart, request timeouts, a graceful
SIGTERM; and, with a hand-made supervisor, the proc.h contract (READY, CONNS,
inherited listeners, the life pipe, exit code 78).
"""
import fcntl
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from sbtree import BIN, EchoClient, make_certificate, wait_for

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


class Skel:
    """A broker and echo workers started by hand in a temporary folder."""

    def __init__(self, folder, limits=None, log_level="debug"):
        self.folder = str(folder)
        self.state = os.path.join(self.folder, "state")
        self.config = os.path.join(self.folder, "switchboard.yml")
        self.procs = {}
        self.ports = {}
        os.makedirs(self.state, exist_ok=True)
        for name, target in (("broker", "switchboard-broker"), ("xmpp", "switchboard-echo"),
                             ("mqtt", "switchboard-echo")):
            os.symlink(os.path.join(BIN, target),
                       os.path.join(self.folder, f"switchboard-{name}"))
        self.crt, self.key = make_certificate(self.folder)
        limits = limits or {}
        lines = [
            "hosts: [example.org]",
            f"state_dir: {self.state}",
            f"log_level: {log_level}",
            f"tls: {{certificate: {self.crt}, key: {self.key}}}",
            "broker: {heartbeat_ms: 200, heartbeat_misses: 3}",
        ]
        if limits:
            lines.append("limits: {" + ", ".join(f"{k}: {v}" for k, v in limits.items()) + "}")
        lines += [
            "workers:",
            "  xmpp:",
            "    enabled: true",
            "    listeners:",
            "      - {name: plain, address: 127.0.0.1, port: 0}",
            "      - {name: tls, address: 127.0.0.1, port: 0, tls: direct}",
            "      - {name: starttls, address: 127.0.0.1, port: 0, tls: starttls}",
            "      - {name: udp, address: 127.0.0.1, port: 0, transport: udp}",
            "  mqtt:",
            "    enabled: true",
            "    listeners:",
            "      - {name: plain, address: 127.0.0.1, port: 0}",
        ]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def log_path(self, name):
        return os.path.join(self.folder, f"{name}.log")

    def log(self, name):
        try:
            with open(self.log_path(name), "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, name):
        log = open(self.log_path(name), "ab")
        self.procs[name] = subprocess.Popen(
            [os.path.join(self.folder, f"switchboard-{name}"), "--config", self.config],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if name == "broker":
            wait_for(lambda: "listening on" in self.log(name), what="broker listening")
            return
        # The worker reports its ports (kernel-chosen) in its log.
        pid = self.procs[name].pid
        text = wait_for(lambda: f"serving (pid {pid})" in self.log(name) and self.log(name),
                        what=f"{name} serving; log:\n{self.log(name)}")
        for m in re.finditer(rf"{name}\[{pid}\]: listener (\S+) on \S+ port (\d+)", text):
            self.ports[(name, m.group(1))] = int(m.group(2))

    def wait_welcome(self, name, count=1):
        wait_for(lambda: self.log(name).count("broker link: welcomed") >= count,
                 what=f"{name} welcomed {count}x; log:\n{self.log(name)}")

    def stop(self, name, sig=signal.SIGTERM, timeout=15):
        p = self.procs.pop(name)
        if p.poll() is None:
            p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise

    def stop_all(self):
        codes = {name: self.stop(name) for name in list(self.procs)}
        for name in ("broker", "xmpp", "mqtt"):
            text = self.log(name)
            for mark in SANITIZER_MARKS:
                assert mark not in text, f"{name}:\n{text}"
        return codes

    def connect(self, worker="xmpp", listener="plain", tls=False):
        return EchoClient("127.0.0.1", self.ports[(worker, listener)], tls=tls)


@pytest.fixture
def skel(tmp_path):
    s = Skel(tmp_path)
    yield s
    s.stop_all()


def started(skel, *names):
    for name in names:
        skel.start(name)
    for name in names:
        if name != "broker":
            skel.wait_welcome(name)
    return skel


def eof(client, timeout=5):
    """True when the server closed the connection (after any pending lines)."""
    try:
        while True:
            client.line(timeout)
    except (EOFError, ConnectionResetError):
        return True


def broker_sessions(client):
    line = client.ask("REQ broker sessions")
    assert line.startswith("RESP ok"), line
    return sorted(w for w in line.split()[2:] if "@" in w)


# --- input -----------------------------------------------------------------------------------

def test_lines_and_unknown_commands(skel):
    skel.start("xmpp")
    c = skel.connect()
    c.sock.sendall(b"ECHO one\r\nECHO two\nFROB\r\n\r\nECHO a\x00b\r\n")
    assert [c.line() for _ in range(5)] == ["one", "two", "ERR unknown command",
                                            "ERR unknown command", "ERR NUL in line"]
    # A line split over many writes is put back together.
    for ch in b"ECHO slow\r\n":
        c.sock.sendall(bytes([ch]))
        time.sleep(0.005)
    assert c.line() == "slow"
    assert c.ask("QUIT") == "BYE"
    assert eof(c)
    assert "closed: quit" in skel.log("xmpp")


def test_line_too_long_is_refused_then_closed(skel):
    skel.start("xmpp")
    c = skel.connect()
    assert c.ask("ECHO " + "x" * 4091) == "x" * 4091  # 4096 bytes: the longest line
    c.sock.sendall(b"ECHO " + b"y" * 4092 + b"\r\n")
    assert c.line() == "ERR line too long"
    assert eof(c)
    # Without any end of line, the protocol stops waiting at the cap too.
    c = skel.connect()
    c.sock.sendall(b"z" * 6000)
    assert c.line() == "ERR line too long"
    assert eof(c)


def test_input_cap_calls_conn_overflow(tmp_path):
    s = Skel(tmp_path, limits={"max_input": 1024})
    try:
        s.start("xmpp")
        c = s.connect()
        c.sock.sendall(b"ECHO " + b"q" * 3000)
        assert c.line() == "ERR line too long"
        assert eof(c)
        assert "1024 bytes of input without a complete message" in s.log("xmpp")
    finally:
        s.stop_all()


# --- timers ----------------------------------------------------------------------------------

def test_idle_timeout(tmp_path):
    s = Skel(tmp_path, limits={"idle_timeout": 1})
    try:
        s.start("xmpp")
        c = s.connect()
        t0 = time.monotonic()
        assert eof(c, timeout=5)
        assert 0.9 <= time.monotonic() - t0 < 3
        # Input keeps a connection alive; WAIT changes the timeout.
        c = s.connect()
        for _ in range(4):
            time.sleep(0.4)
            assert c.ask("ECHO alive") == "alive"
        assert c.ask("WAIT 0.3") == "OK"
        t0 = time.monotonic()
        assert eof(c)
        assert time.monotonic() - t0 < 0.9
        assert "closed: idle timeout" in s.log("xmpp")
        # A direct-TLS connection that never says hello is dropped too.
        raw = socket.create_connection(("127.0.0.1", s.ports[("xmpp", "tls")]), timeout=5)
        assert raw.recv(10) == b""
        assert "TLS handshake timeout" in s.log("xmpp")
    finally:
        s.stop_all()


# --- output ----------------------------------------------------------------------------------

def test_slow_reader_is_dropped_and_others_are_served(tmp_path):
    s = Skel(tmp_path, limits={"max_output": 65536})
    try:
        s.start("xmpp")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", s.ports[("xmpp", "plain")]))
        slow.settimeout(0.2)
        line = b"ECHO " + b"x" * 4000 + b"\r\n"
        try:
            for _ in range(5000):  # 20 MB of replies that are never read
                slow.sendall(line)
        except OSError:
            pass
        wait_for(lambda: "closed: too slow: output buffer full" in s.log("xmpp"),
                 what="slow reader dropped")
        other = s.connect()
        assert other.ask("ECHO fine") == "fine"
        slow.close()
    finally:
        s.stop_all()


def test_large_reply_is_written_in_full(skel):
    skel.start("xmpp")
    c = skel.connect()
    lines = [f"ECHO {i:04d} " + "p" * 4000 for i in range(200)]
    c.sock.sendall(("\r\n".join(lines) + "\r\n").encode())
    for i in range(200):
        assert c.line().startswith(f"{i:04d} ")


# --- TLS -------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TLS 1.1 on purpose
def test_direct_tls_and_old_versions_refused(skel):
    skel.start("xmpp")
    c = skel.connect(listener="tls", tls=True)
    assert c.ask("ECHO secret") == "secret"
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert c.ask("STARTTLS") == "ERR already TLS"
    # Bulk data crosses TLS records in both directions.
    big = "b" * 4000
    c.sock.sendall(("".join(f"ECHO {big}\r\n" for _ in range(50))).encode())
    for _ in range(50):
        assert c.line() == big
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    raw = socket.create_connection(("127.0.0.1", skel.ports[("xmpp", "tls")]), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        ctx.wrap_socket(raw, server_hostname="localhost")
    wait_for(lambda: "unsupported protocol" in skel.log("xmpp"), what="server refused TLS 1.1")


def test_starttls_discards_clear_text_sent_after_the_command(skel):
    skel.start("xmpp")
    c = skel.connect(listener="starttls")
    c.sock.sendall(b"ECHO before\r\nSTARTTLS\r\nECHO injected\r\n")
    assert c.line() == "before"
    assert c.line() == "PROCEED"
    assert c.buf == b""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    assert c.ask("ECHO after") == "after"
    assert c.ask("STARTTLS") == "ERR already TLS"
    assert c.ask("QUIT") == "BYE"
    assert eof(c)
    # No TLS context on a worker without TLS listeners: refused, not crashed.
    skel.start("mqtt")
    m = skel.connect("mqtt")
    m.send("STARTTLS")
    assert m.line() == "PROCEED"
    assert eof(m)
    assert "STARTTLS without a TLS context" in skel.log("mqtt")


# --- limits ----------------------------------------------------------------------------------

def test_connection_limit(tmp_path):
    s = Skel(tmp_path, limits={"max_connections": 3})
    try:
        s.start("xmpp")
        clients = [s.connect() for _ in range(3)]
        for c in clients:
            assert c.ask("ECHO in") == "in"
        extra = s.connect()
        assert eof(extra)
        wait_for(lambda: "connection limit 3 reached" in s.log("xmpp"), what="refusal logged")
        clients[0].close()

        def served():
            try:
                return s.connect().ask("ECHO again") == "again"
            except (EOFError, ConnectionResetError):
                return False
        # The slot is free again once the closed connection is gone.
        wait_for(served, what="a free slot")
    finally:
        s.stop_all()


# --- the broker link -------------------------------------------------------------------------

def test_routing_between_two_workers(skel):
    started(skel, "broker", "xmpp", "mqtt")
    a, b, watcher = skel.connect("xmpp"), skel.connect("mqtt"), skel.connect("xmpp")
    assert watcher.ask("LISTEN") == "OK"
    assert a.ask("SESSION alice@example.org/phone 5") == "OK"
    assert b.ask("SESSION bob@example.org/desk") == "OK"
    assert a.ask("ROUTE conference.example.org") == "OK"
    assert a.ask("INTEREST sensors/#") == "OK"
    wait_for(lambda: len(broker_sessions(a)) == 2, what="two sessions")
    assert a.ask("SEND bob@example.org/desk hello bob") == "OK"
    assert b.line().split(" ", 5) == ["STANZA", "1", "chat", "alice@example.org/phone",
                                      "bob@example.org/desk", "hello bob"]
    assert b.ask("SEND alice@example.org hi alice") == "OK"
    assert a.line() == "STANZA 1 chat bob@example.org/desk alice@example.org hi alice"
    # Routed to the route's owner, which has no target connection: LISTEN gets it.
    assert b.ask("SEND room@conference.example.org to the room") == "OK"
    assert watcher.line().endswith(" room@conference.example.org to the room")
    assert b.ask("PUBLISH sensors/t1 21.5") == "OK"
    assert watcher.line() == "STANZA 4 - bob@example.org/desk sensors/t1 21.5"
    # Requests: answered by the broker, or unavailable for a missing service.
    assert b.ask("REQ broker stats").startswith("RESP ok ")
    assert b.ask("REQ store ping") == "RESP unavailable"
    # Invalid for the wire (a string field too long): refused locally, the link survives.
    assert a.ask("ROUTE " + "d" * 3100) == "ERR bad argument"
    assert "broker link: ROUTE_ADD dropped" in skel.log("xmpp")
    assert a.ask("ECHO still here") == "still here"
    # A closed session is withdrawn.
    b.close()
    wait_for(lambda: broker_sessions(a) == ["alice@example.org/phone"], what="bob gone")


def test_broker_restart_is_survived_without_restarting_workers(skel):
    started(skel, "broker", "xmpp", "mqtt")
    a, b, watcher = skel.connect("xmpp"), skel.connect("mqtt"), skel.connect("xmpp")
    assert watcher.ask("LISTEN") == "OK"
    assert a.ask("SESSION alice@example.org/phone") == "OK"
    assert b.ask("SESSION bob@example.org/desk") == "OK"
    assert a.ask("ROUTE conference.example.org") == "OK"
    assert a.ask("INTEREST sensors/#") == "OK"
    wait_for(lambda: len(broker_sessions(a)) == 2, what="two sessions")
    workers = {n: skel.procs[n].pid for n in ("xmpp", "mqtt")}
    skel.stop("broker", signal.SIGKILL)
    skel.start("broker")
    skel.wait_welcome("xmpp", 2)
    skel.wait_welcome("mqtt", 2)
    wait_for(lambda: len(broker_sessions(a)) == 2, what="sessions re-announced")
    assert {n: skel.procs[n].pid for n in ("xmpp", "mqtt")} == workers
    assert a.ask("SEND bob@example.org/desk after the restart") == "OK"
    assert b.line().endswith(" after the restart")
    assert b.ask("SEND room@conference.example.org route again") == "OK"
    assert watcher.line().endswith(" route again")
    assert b.ask("PUBLISH sensors/x interest again") == "OK"
    assert watcher.line().endswith(" interest again")


def test_request_timeout_and_recovery_from_a_stalled_broker(skel):
    started(skel, "broker", "xmpp", "mqtt")
    a, b = skel.connect("xmpp"), skel.connect("mqtt")
    assert b.ask("SESSION bob@example.org/desk") == "OK"
    wait_for(lambda: broker_sessions(a) == ["bob@example.org/desk"], what="bob's session")
    broker = skel.procs["broker"]
    broker.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert a.ask("REQ broker stats", timeout=10) == "RESP unavailable"
        assert 4.5 < time.monotonic() - t0 < 8
        assert "broker link: nothing from the broker" in skel.log("xmpp")
    finally:
        broker.send_signal(signal.SIGCONT)
    # Until each worker is welcomed again, the broker's tables may still hold
    # what the stale links announced; the new links replace them.
    skel.wait_welcome("xmpp", 2)
    skel.wait_welcome("mqtt", 2)
    wait_for(lambda: broker_sessions(a) == ["bob@example.org/desk"], what="bob announced again")
    assert a.ask("SEND bob@example.org hello again") == "OK"
    assert b.line().endswith(" hello again")


def test_sigterm_closes_connections_and_says_bye(skel):
    started(skel, "broker", "xmpp")
    c = skel.connect()
    assert c.ask("SESSION carol@example.org/x") == "OK"
    wait_for(lambda: broker_sessions(c) == ["carol@example.org/x"], what="carol's session")
    assert skel.stop("xmpp") == 0
    assert eof(c)
    text = skel.log("xmpp")
    assert "closed: shutting down" in text and "stopped" in text
    wait_for(lambda: "said goodbye" in skel.log("broker"), what="BYE at the broker")


# --- the supervisor contract (proc.h) ----------------------------------------------------------

def high_fd(fd):
    """A non-inheritable copy of fd numbered above the ones the worker expects."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 20)


def supervised(skel, listen, extra_env=None):
    """Starts xmpp as the supervisor would: fd 3 life pipe, fd 4 status pipe,
    listeners from fd 5 on. listen: [(name, socket)]. Returns (proc, life_w, status_r)."""
    life_r, life_w = os.pipe()
    status_r, status_w = os.pipe()
    plan = [(high_fd(life_r), 3), (high_fd(status_w), 4)]
    names = []
    for i, (name, sock) in enumerate(listen):
        plan.append((high_fd(sock.fileno()), 5 + i))
        names.append(f"{name}={5 + i}")
    os.close(life_r)
    os.close(status_w)

    def arrange():
        for src, dst in plan:
            os.dup2(src, dst)

    env = dict(os.environ, SWITCHBOARD_SUPERVISED="1", SWITCHBOARD_LISTEN_FDS=" ".join(names))
    env.update(extra_env or {})
    log = open(skel.log_path("xmpp"), "ab")
    proc = subprocess.Popen([os.path.join(skel.folder, "switchboard-xmpp"), "--config",
                             skel.config], stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=arrange, close_fds=False)
    log.close()
    for src, _ in plan:
        os.close(src)
    os.set_blocking(status_r, False)
    return proc, life_w, status_r


class StatusReader:
    def __init__(self, fd):
        self.fd, self.buf = fd, b""

    def lines(self):
        try:
            while True:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    break
                self.buf += chunk
        except BlockingIOError:
            pass
        return self.buf.decode().splitlines()


def listening(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        s.listen(128)
    return s


def test_supervised_contract(skel):
    socks = {"plain": listening(), "tls": listening(), "starttls": listening(),
             "udp": listening(socket.SOCK_DGRAM)}
    proc, life_w, status_r = supervised(skel, list(socks.items()))
    status = StatusReader(status_r)
    try:
        wait_for(lambda: "READY" in status.lines(), what="READY")
        port = socks["plain"].getsockname()[1]
        clients = [EchoClient("127.0.0.1", port) for _ in range(2)]
        for c in clients:
            assert c.ask("ECHO x") == "x"
        wait_for(lambda: status.lines()[-1:] == ["CONNS 2"], what="CONNS 2")
        for c in clients:
            c.close()
        wait_for(lambda: status.lines()[-1:] == ["CONNS 0"], what="CONNS 0")
        # Reports are rate-limited: a burst of 20 connections does not make 40 lines.
        before = len(status.lines())
        burst = [EchoClient("127.0.0.1", port) for _ in range(20)]
        for c in burst:
            c.close()
        wait_for(lambda: status.lines()[-1:] == ["CONNS 0"], what="CONNS 0 after a burst")
        assert len(status.lines()) - before < 15, " ".join(status.lines())
        # The inherited UDP socket serves datagrams.
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(5)
        u.sendto(b"ping", socks["udp"].getsockname())
        assert u.recvfrom(100)[0] == b"ping"
        # The supervisor goes away: the worker exits cleanly.
        os.close(life_w)
        life_w = None
        assert proc.wait(10) == 0
    finally:
        if life_w is not None:
            os.close(life_w)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(status_r)
    assert "the supervisor is gone" in skel.log("xmpp")


def test_supervised_configuration_errors_exit_78(skel):
    # A configured listener without a socket.
    socks = [("plain", listening()), ("tls", listening()), ("udp", listening(socket.SOCK_DGRAM))]
    proc, life_w, status_r = supervised(skel, socks)
    assert proc.wait(10) == 78
    os.close(life_w)
    os.close(status_r)
    assert "listener starttls: no socket from the supervisor" in skel.log("xmpp")
    # A socket of the wrong kind.
    socks = [("plain", listening()), ("tls", listening()), ("starttls", listening()),
             ("udp", listening())]
    proc, life_w, status_r = supervised(skel, socks)
    assert proc.wait(10) == 78
    os.close(life_w)
    os.close(status_r)
    assert "listener udp: inherited fd 8 is not a UDP socket" in skel.log("xmpp")
    # A certificate that is not there.
    os.rename(skel.crt, skel.crt + ".gone")
    r = subprocess.run([os.path.join(skel.folder, "switchboard-xmpp"), "--config", skel.config],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78, r.stderr
