"""Runs a whole Switchboard tree for black-box tests.

A Tree generates a configuration on ephemeral loopback ports in a temporary
folder, starts the real supervisor (which starts the real broker and store),
and offers the operator's view of it: the control socket, switchboardctl,
and the pids of every process. Protocol workers that do not exist yet are
stood in for by switchboard-echo, a line-based test worker on the shared
worker skeleton, installed under the protocol's binary name. Workers named
in real= run their real binary instead, with the listeners of
Tree.REAL_LISTENERS (xmpp: c2s STARTTLS and c2s-tls direct TLS; mqtt, sip,
irc: their plain and TLS ones; rooms: none) and the worker's own settings
from worker_options.
"""
import os
import signal
import socket
import ssl
import subprocess
import time

BIN = os.environ.get("SB_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
CTL_TIMEOUT = 30


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def make_certificate(folder):
    crt, key = os.path.join(folder, "dev.crt"), os.path.join(folder, "dev.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    return crt, key


class Tree:
    # The listeners of a real worker: (name, tls mode, transport). Only the
    # first one gets the port given to write_config; the others port 0.
    REAL_LISTENERS = {
        "xmpp": (("c2s", "starttls", "tcp"), ("c2s-tls", "direct", "tcp")),
        "mqtt": (("mqtt", "none", "tcp"), ("mqtt-tls", "direct", "tcp")),
        "sip": (("sip-udp", "none", "udp"), ("sip-tcp", "none", "tcp"),
                ("sip-tls", "direct", "tcp")),
        "irc": (("irc", "none", "tcp"), ("irc-tls", "direct", "tcp")),
        "rooms": (),
    }

    def __init__(self, folder, workers=("xmpp", "mqtt"), store=None, extra="", real=(),
                 worker_options=None):
        self.folder = str(folder)
        self.real = tuple(real)
        self.worker_options = worker_options or {}
        self.state = os.path.join(self.folder, "state")
        self.libexec = os.path.join(self.folder, "libexec")
        self.config = os.path.join(self.folder, "switchboard.yml")
        self.log_path = os.path.join(self.folder, "supervisor.log")
        self.workers = workers
        self.proc = None
        os.makedirs(self.libexec, exist_ok=True)
        for name in ("broker", "store"):
            os.symlink(os.path.join(BIN, f"switchboard-{name}"),
                       os.path.join(self.libexec, f"switchboard-{name}"))
        for name in workers:
            binary = f"switchboard-{name}" if name in self.real else "switchboard-echo"
            os.symlink(os.path.join(BIN, binary),
                       os.path.join(self.libexec, f"switchboard-{name}"))
        self.crt, self.key = make_certificate(self.folder)
        self.write_config(store=store, extra=extra)

    def write_config(self, store=None, extra="", ports=None):
        ports = ports or {}
        lines = [
            "hosts: [example.org, localhost]",
            f"state_dir: {self.state}",
            "log_level: info",
            f"tls: {{certificate: {self.crt}, key: {self.key}}}",
            "broker: {heartbeat_ms: 200, heartbeat_misses: 3}",
            "supervisor: {backoff_min_ms: 50, backoff_max_ms: 1000, stop_timeout_ms: 5000,"
            " restart_intensity: 20, restart_period: 60}",
        ]
        if store:
            lines.append(store)
        if self.workers:
            lines.append("workers:")
        for name in self.workers:
            port = ports.get(name, 0)
            lines += [f"  {name}:", "    enabled: true"]
            for key, value in self.worker_options.get(name, {}).items():
                if isinstance(value, bool):
                    value = "true" if value else "false"
                lines.append(f"    {key}: {value}")
            if name in self.real:
                if self.REAL_LISTENERS[name]:
                    lines.append("    listeners:")
                for i, (lname, mode, transport) in enumerate(self.REAL_LISTENERS[name]):
                    lport = port if i == 0 else 0
                    lines.append(f"      - {{name: {lname}, address: 127.0.0.1, port: {lport},"
                                 f" tls: {mode}, transport: {transport}}}")
                continue
            lines.append("    listeners:")
            lines += [
                f"      - {{name: plain, address: 127.0.0.1, port: {port}}}",
                f"      - {{name: tls, address: 127.0.0.1, port: 0, tls: direct}}",
            ]
        lines.append(extra)
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    # --- running -----------------------------------------------------------------
    def start(self, wait=True):
        env = dict(os.environ, SWITCHBOARD_LIBEXEC_DIR=self.libexec)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "switchboard"), "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_running()
        return self

    def wait_running(self, names=None, timeout=20):
        names = names or ["broker", "store", *self.workers]

        def ready():
            try:
                st = self.status()
            except OSError:
                return None
            return st if all(st.get(n, {}).get("state") == "running" for n in names) else None
        return wait_for(ready, timeout, what=f"{names} running; log:\n{self.log_tail()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
            self.check_sanitizers()

    def check_sanitizers(self):
        """Fails when any process of the tree reported a sanitizer error (ASan build)."""
        with open(self.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in text, f"sanitizer report in the tree's log:\n{text[-4000:]}"

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    # --- the operator's view -----------------------------------------------------
    def control(self, command):
        """Sends one command to the supervisor's control socket; returns (ok, lines)."""
        path = os.path.join(self.state, "run", "control.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(15)
            s.connect(path)
            s.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = data.decode().splitlines()
        assert lines, f"no reply to {command!r}"
        return lines[-1] == "OK", lines[:-1] if lines[-1] == "OK" else lines

    def status(self):
        """{worker: {state, pid, uptime, restarts, connections}} and listeners."""
        ok, lines = self.control("status")
        assert ok, lines
        workers = {}
        for line in lines:
            f = line.split("\t")
            if f[0] == "listener":
                continue
            workers[f[0]] = {"state": f[1], "pid": int(f[2]) if f[2].isdigit() else 0,
                             "uptime": f[3], "restarts": int(f[4]), "connections": int(f[5])}
        return workers

    def listeners(self):
        """{(worker, name): (address, port)} from the status listener lines."""
        ok, lines = self.control("status")
        assert ok, lines
        out = {}
        for line in lines:
            f = line.split("\t")
            if f[0] == "listener":
                addr, port = f[3].rsplit(":", 1)
                out[(f[1], f[2])] = (addr, int(port.split("/")[0]))
        return out

    def pid(self, worker):
        return self.status()[worker]["pid"]

    def ctl(self, *args, input=None, timeout=CTL_TIMEOUT):
        return subprocess.run([os.path.join(BIN, "switchboardctl"), "--config", self.config,
                               *args], input=input, capture_output=True, text=True,
                              timeout=timeout)

    def connect(self, worker, listener="plain", tls=False):
        host, port = self.listeners()[(worker, listener)]
        return EchoClient(host, port, tls=tls)


class EchoClient:
    """A line client for switchboard-echo (see tests/proto/echo_worker.c)."""

    def __init__(self, host, port, tls=False):
        sock = socket.create_connection((host, port), timeout=10)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""

    def send(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def line(self, timeout=10):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode()

    def ask(self, line, timeout=10):
        self.send(line)
        return self.line(timeout)

    def expect(self, prefix, timeout=10):
        """Reads lines until one starts with prefix; returns it."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.line(max(0.05, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            seen.append(line)
        raise AssertionError(f"no line starting with {prefix!r}; saw {seen}")

    def close(self):
        self.sock.close()


def xmpp_tree(folder, users, domain="example.org"):
    """A started tree with the real XMPP worker and an account USER@domain
    (password "USER-pw") for each of users."""
    t = Tree(folder, workers=("xmpp",), real=("xmpp",)).start()
    for user in users:
        r = t.ctl("register", user, domain, f"{user}-pw")
        assert r.returncode == 0, r.stderr
    return t
