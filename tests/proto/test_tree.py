"""Integration: the whole process tree, started by the real supervisor.

Covers the foundation's promises end to end: every process comes up and
reports ready; accounts are created through switchboardctl and the store;
stanzas cross between two workers through the broker; the broker and the
store come back after SIGKILL with their tables rebuilt and no acknowledged
account lost; a dead worker's sessions are announced unavailable; listening
sockets survive a worker restart; SIGHUP restarts only what changed; a bad
configuration is refused with file, line and reason; SIGTERM, or the loss of
the supervisor, leaves no process behind.
"""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from sbtree import BIN, Tree, pid_alive, wait_for


@pytest.fixture
def tree(tmp_path):
    t = Tree(tmp_path).start()
    yield t
    t.stop()


def tree_pids(t):
    return {name: w["pid"] for name, w in t.status().items()}


def test_status_shows_every_process_running(tree):
    st = tree.status()
    for name in ("broker", "store", "xmpp", "mqtt"):
        assert st[name]["state"] == "running", st
        assert pid_alive(st[name]["pid"])
    out = tree.ctl("status")
    assert out.returncode == 0, out.stderr
    for name in ("broker", "store", "xmpp", "mqtt"):
        assert name in out.stdout


def test_connection_counts_reach_status(tree):
    clients = [tree.connect("xmpp") for _ in range(3)]
    for c in clients:
        assert c.ask("ECHO hi") == "hi"
    wait_for(lambda: tree.status()["xmpp"]["connections"] == 3, what="3 connections")
    for c in clients:
        c.close()
    wait_for(lambda: tree.status()["xmpp"]["connections"] == 0, what="0 connections")


def test_accounts_through_switchboardctl(tree):
    r = tree.ctl("register", "alice", "example.org", "secret")
    assert r.returncode == 0, r.stderr
    r = tree.ctl("register", "alice", "example.org", "other")
    assert r.returncode == 1 and "exists" in r.stderr
    r = tree.ctl("register", "bob", "example.org", input="pw-from-stdin\n")
    assert r.returncode == 0, r.stderr
    r = tree.ctl("register", "carol", "unknown.example", "pw")
    assert r.returncode == 1, (r.stdout, r.stderr)
    r = tree.ctl("registered-users", "example.org")
    assert r.returncode == 0 and r.stdout.split() == ["alice", "bob"]
    assert tree.ctl("passwd", "alice", "example.org", "new").returncode == 0
    assert tree.ctl("passwd", "nobody", "example.org", "new").returncode == 1
    assert tree.ctl("unregister", "alice", "example.org").returncode == 0
    assert tree.ctl("unregister", "alice", "example.org").returncode == 1
    assert tree.ctl("registered-users", "example.org").stdout.split() == ["bob"]
    assert tree.ctl("register", "x").returncode == 2
    assert tree.ctl("frobnicate").returncode == 2


def test_no_password_in_the_database(tree):
    assert tree.ctl("register", "dave", "example.org", "very-distinctive-pw").returncode == 0
    db = os.path.join(tree.state, "switchboard.db")
    assert os.path.exists(db)
    tree.stop()
    for name in os.listdir(tree.state):
        path = os.path.join(tree.state, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                assert b"very-distinctive-pw" not in f.read(), name


def sessions(tree):
    r = tree.ctl("connected-users")
    assert r.returncode == 0, r.stderr
    return sorted(r.stdout.split())


def test_stanzas_cross_workers_through_the_broker(tree):
    a, b = tree.connect("xmpp"), tree.connect("mqtt")
    assert a.ask("SESSION alice@example.org/phone") == "OK"
    assert b.ask("SESSION bob@example.org/desk") == "OK"
    wait_for(lambda: len(sessions(tree)) == 2, what="two sessions")
    assert sessions(tree) == ["alice@example.org/phone", "bob@example.org/desk"]
    assert a.ask("SEND bob@example.org/desk hello bob") == "OK"
    line = b.expect("STANZA")
    assert line.split(" ", 5) == ["STANZA", "1", "chat", "alice@example.org/phone",
                                  "bob@example.org/desk", "hello bob"]
    # A bare address reaches the session too.
    assert a.ask("SEND bob@example.org again") == "OK"
    assert b.expect("STANZA").endswith(" again")


def test_broker_restart_rebuilds_tables_without_restarting_workers(tree):
    a, b = tree.connect("xmpp"), tree.connect("mqtt")
    assert a.ask("SESSION alice@example.org/phone") == "OK"
    assert b.ask("SESSION bob@example.org/desk") == "OK"
    wait_for(lambda: len(sessions(tree)) == 2, what="two sessions")
    before = tree_pids(tree)
    os.kill(before["broker"], signal.SIGKILL)
    wait_for(lambda: tree.pid("broker") not in (0, before["broker"]), what="a new broker")
    tree.wait_running()
    wait_for(lambda: len(sessions(tree)) == 2, what="sessions re-announced")
    after = tree_pids(tree)
    for name in ("store", "xmpp", "mqtt"):
        assert after[name] == before[name], f"{name} was restarted"
    assert a.ask("SEND bob@example.org/desk after the restart") == "OK"
    assert b.expect("STANZA").endswith("after the restart")


def test_worker_death_announces_unavailable(tree):
    watcher, b = tree.connect("xmpp"), tree.connect("mqtt")
    assert watcher.ask("LISTEN") == "OK"
    assert b.ask("SESSION bob@example.org/desk") == "OK"
    wait_for(lambda: "bob@example.org/desk" in sessions(tree), what="bob's session")
    old = tree.pid("mqtt")
    os.kill(old, signal.SIGKILL)
    line = watcher.expect("STANZA 2 unavailable", timeout=10)
    assert line.split()[3:5] == ["bob@example.org/desk", "bob@example.org"]
    wait_for(lambda: tree.pid("mqtt") not in (0, old), what="mqtt restarted")
    assert "bob@example.org/desk" not in sessions(tree)


def test_listeners_accept_while_a_worker_restarts(tree):
    host, port = tree.listeners()[("mqtt", "plain")]
    old = tree.pid("mqtt")
    assert tree.ctl("restart", "mqtt").returncode == 0
    # Connections made while the worker is down wait in the backlog: none is refused.
    socks = []
    for _ in range(20):
        socks.append(socket.create_connection((host, port), timeout=10))
        time.sleep(0.01)
    wait_for(lambda: tree.pid("mqtt") not in (0, old), what="mqtt restarted")
    for s in socks:
        s.sendall(b"ECHO alive\r\n")
        s.settimeout(10)
        assert s.recv(100).startswith(b"alive")
        s.close()


def test_tls_listener(tree):
    c = tree.connect("xmpp", "tls", tls=True)
    assert c.ask("ECHO over tls") == "over tls"


def test_broker_and_store_killed_while_accounts_are_created(tree):
    acknowledged, failed = [], []
    stop = threading.Event()

    def create():
        i = 0
        while not stop.is_set() and i < 400:
            name = f"user{i}"
            r = tree.ctl("register", name, "example.org", "pw", timeout=60)
            (acknowledged if r.returncode == 0 else failed).append(name)
            i += 1

    workers = [threading.Thread(target=create)]
    workers[0].start()
    wait_for(lambda: len(acknowledged) >= 5, what="first accounts")
    broker = tree.pid("broker")
    os.kill(broker, signal.SIGKILL)
    wait_for(lambda: tree.pid("broker") not in (0, broker), what="broker back")
    n = len(acknowledged)
    wait_for(lambda: len(acknowledged) > n + 5, timeout=30, what="registrations resume")
    store = tree.pid("store")
    os.kill(store, signal.SIGKILL)
    wait_for(lambda: tree.pid("store") not in (0, store), what="store back")
    n = len(acknowledged)
    wait_for(lambda: len(acknowledged) > n + 5, timeout=30, what="registrations resume")
    stop.set()
    workers[0].join(120)
    tree.wait_running()
    r = tree.ctl("registered-users", "example.org")
    assert r.returncode == 0, r.stderr
    stored = set(r.stdout.split())
    lost = [name for name in acknowledged if name not in stored]
    assert not lost, f"acknowledged but lost: {lost}"
    assert len(acknowledged) >= 15


def test_sighup_restarts_only_what_changed(tree):
    before = tree_pids(tree)
    # The same settings written differently: nothing restarts.
    with open(tree.config, "a") as f:
        f.write("# a comment only\n")
    tree.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert tree_pids(tree) == before
    # Move mqtt's plain listener to a fixed free port: only mqtt restarts.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tree.write_config(ports={"mqtt": port})
    ok, lines = tree.control("reload")
    assert ok, lines
    wait_for(lambda: tree.pid("mqtt") not in (0, before["mqtt"]), what="mqtt restarted")
    tree.wait_running()
    after = tree_pids(tree)
    for name in ("broker", "store", "xmpp"):
        assert after[name] == before[name], f"{name} restarted"
    assert tree.listeners()[("mqtt", "plain")][1] == port
    c = tree.connect("mqtt")
    assert c.ask("ECHO moved") == "moved"


def test_reload_with_a_bad_configuration_keeps_running(tree):
    before = tree_pids(tree)
    with open(tree.config, "a") as f:
        f.write("bogus_key: 1\n")
    ok, lines = tree.control("reload")
    assert not ok and "bogus_key" in " ".join(lines)
    r = tree.ctl("reload")
    assert r.returncode != 0 and "bogus_key" in r.stderr
    assert tree_pids(tree) == before


def test_sigterm_leaves_no_process_behind(tree):
    pids = list(tree_pids(tree).values())
    tree.proc.send_signal(signal.SIGTERM)
    assert tree.proc.wait(timeout=30) == 0
    for pid in pids:
        wait_for(lambda: not pid_alive(pid), timeout=5, what=f"pid {pid} gone")
    assert not os.path.exists(os.path.join(tree.state, "run", "control.sock"))


def test_workers_exit_when_the_supervisor_dies(tree):
    pids = list(tree_pids(tree).values())
    tree.proc.send_signal(signal.SIGKILL)
    tree.proc.wait()
    for pid in pids:
        wait_for(lambda: not pid_alive(pid), timeout=10, what=f"orphan {pid} exits")


def test_bad_configuration_is_refused_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(f"hosts: [example.org]\nstate_dir: {tmp_path}\nworkers:\n"
                   "  xmpp:\n    enabled: true\n    listeners:\n"
                   "      - {name: c2s, address: 127.0.0.1, port: 99999}\n")
    for args in (["--check-config"], []):
        r = subprocess.run([os.path.join(BIN, "switchboard"), "--config", str(bad), *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 78
        assert f"{bad}:7:" in r.stderr and "99999" in r.stderr, r.stderr
    r = subprocess.run([os.path.join(BIN, "switchboardctl"), "--config", str(bad), "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78


def test_switchboardctl_without_a_server(tmp_path):
    t = Tree(tmp_path)
    r = t.ctl("status")
    assert r.returncode == 3, (r.stdout, r.stderr)
    r = t.ctl("--timeout", "1", "register", "a", "example.org", "pw")
    assert r.returncode == 3, (r.stdout, r.stderr)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mariadb")
    script = os.path.join(os.path.dirname(__file__), "..", "mariadb.sh")
    subprocess.run([script, "start", str(folder)], check=True, timeout=120)
    yield os.path.join(folder, "mysql.sock")
    subprocess.run([script, "stop", str(folder)], timeout=120)


def test_mariadb_backend(tmp_path, mariadb):
    store = ("store: {backend: mysql, mysql: {socket: %s, user: switchboard,"
             " password: switchboard, database: switchboard}}" % mariadb)
    t = Tree(tmp_path, workers=(), store=store).start()
    try:
        assert t.ctl("register", "erin", "example.org", "pw").returncode == 0
        assert t.ctl("register", "erin", "example.org", "pw").returncode == 1
        os.kill(t.pid("store"), signal.SIGKILL)
        t.wait_running()
        r = t.ctl("registered-users", "example.org")
        assert r.returncode == 0 and "erin" in r.stdout.split()
        assert not os.path.exists(os.path.join(t.state, "switchboard.db"))
    finally:
        t.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_workers_drop_privileges_to_the_configured_user():
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    folder = tempfile.mkdtemp(prefix="sb-user-")
    os.chmod(folder, 0o755)
    t = Tree(folder, extra="user: nobody")
    os.chmod(t.key, 0o600)  # only root can read it: the workers read it before dropping
    t.start()
    try:
        for name, w in t.status().items():
            with open(f"/proc/{w['pid']}/status") as f:
                uids = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
            assert all(int(u) == nobody.pw_uid for u in uids), (name, uids)
        assert t.ctl("register", "frank", "example.org", "pw").returncode == 0
        assert t.ctl("registered-users", "example.org").stdout.split() == ["frank"]
        c = t.connect("xmpp", "tls", tls=True)
        assert c.ask("ECHO as nobody") == "as nobody"
        assert os.stat(os.path.join(t.state, "switchboard.db")).st_uid == nobody.pw_uid
    finally:
        t.stop()
        shutil.rmtree(folder, ignore_errors=True)
