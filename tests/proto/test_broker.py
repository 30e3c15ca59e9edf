"""Black-box tests of switchboard-broker: the real binary, started standalone
with a generated configuration, driven by ZeroMQ DEALER peers that speak the
frame format of shared/ipc.h (sbipc.py).

Covers HELLO/WELCOME, REHELLO for unknown peers, routing between peers
(full and bare addresses, routes, bounces, publishes, requests and
responses), unavailable presences on BYE, on heartbeat timeout and on
replacement of a worker, DISCONNECT on malformed input, garbage that must
never crash the broker, and the supervisor contract (READY, life pipe,
SIGTERM).
"""
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest
import zmq

sys.path.insert(0, os.path.dirname(__file__))
from sbipc import Code, Skind, Tag, Type, decode, field, frame, msg, raw_msg  # noqa: E402

BIN = os.environ.get("SB_BIN", os.path.join(os.path.dirname(__file__), "../../build/bin"))
BROKER = os.path.join(BIN, "switchboard-broker")


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Broker:
    """A broker process in its own temporary state folder."""

    def __init__(self, heartbeat_ms=1000, misses=10, supervised=False):
        # Short path: the socket path must fit a sockaddr_un.
        self.folder = tempfile.mkdtemp(prefix="sbb", dir="/tmp")
        self.state = os.path.join(self.folder, "state")
        self.config = os.path.join(self.folder, "switchboard.yml")
        self.log_path = os.path.join(self.folder, "broker.log")
        with open(self.config, "w") as f:
            f.write(f"state_dir: {self.state}\nlog_level: debug\n"
                    f"broker:\n  heartbeat_ms: {heartbeat_ms}\n  heartbeat_misses: {misses}\n")
        self.socket_path = os.path.join(self.state, "run", "broker.sock")
        self.endpoint = "ipc://" + self.socket_path
        self.ctx = zmq.Context()
        self.peers = []
        env = dict(os.environ)
        env.pop("SWITCHBOARD_SUPERVISED", None)
        self.life_w = self.status_r = None
        preexec = None
        if supervised:
            life_r, self.life_w = os.pipe()
            self.status_r, status_w = os.pipe()
            env["SWITCHBOARD_SUPERVISED"] = "1"

            def preexec():
                # As the supervisor does: the life pipe on fd 3, the status
                # pipe on fd 4 (moved out of the way first, in case the
                # pipes themselves sit on 3 or 4).
                life, status = os.dup(life_r) + 100, os.dup(status_w) + 100
                os.dup2(life_r, life)
                os.dup2(status_w, status)
                os.dup2(life, 3)
                os.dup2(status, 4)
                os.closerange(5, 4096)

        self.log = open(self.log_path, "w")
        # close_fds would run after preexec and close fds 3 and 4 again.
        self.proc = subprocess.Popen([BROKER, "--config", self.config], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, close_fds=not supervised,
                                     preexec_fn=preexec)
        if supervised:
            os.close(life_r)
            os.close(status_w)
        wait_for(lambda: os.path.exists(self.socket_path) or self.proc.poll() is not None,
                 what="the broker socket")
        assert self.proc.poll() is None, self.log_text()

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def peer(self, kind="test", pid=None, hello=True, identity=None):
        p = Peer(self, kind, pid if pid is not None else random.randint(1000, 10**6), identity)
        self.peers.append(p)
        if hello:
            p.hello()
        return p

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        for p in self.peers:
            p.sock.close(0)
        self.ctx.term()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.life_w is not None:
            for fd in (self.life_w, self.status_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
        return self.proc.returncode

    def cleanup(self):
        shutil.rmtree(self.folder, ignore_errors=True)


class Peer:
    """A DEALER peer; messages it receives are queued and matched by expect()."""

    def __init__(self, broker, kind, pid, identity):
        self.broker = broker
        self.kind, self.pid = kind, pid
        self.sock = broker.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.ROUTING_ID, identity)
        self.sock.connect(broker.endpoint)
        self.queue = []
        self.id = None
        self.epoch = None

    def send(self, *msgs):
        self.sock.send(frame(*msgs))

    def send_raw(self, data):
        if isinstance(data, list):
            self.sock.send_multipart(data)
        else:
            self.sock.send(data)

    def hello(self):
        self.send(msg(Type.LINK_HELLO, kind=self.kind, pid=self.pid))
        welcome = self.expect(Type.LINK_WELCOME)
        self.id, self.epoch = welcome.worker, welcome.epoch
        return welcome

    def _fill(self, timeout):
        if self.sock.poll(int(timeout * 1000)):
            self.queue.extend(decode(self.sock.recv()))
            return True
        return False

    def expect(self, type_, pred=lambda m: True, timeout=3.0):
        """The first queued or arriving message of this type that satisfies
        pred (earlier non-matching ones stay queued)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.queue):
                if m.type == type_ and pred(m):
                    return self.queue.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"peer {self.id}: no {type_.name} (queued: {self.queue})")
            self._fill(left)

    def expect_none(self, type_, pred=lambda m: True, timeout=0.5):
        deadline = time.monotonic() + timeout
        while True:
            for m in self.queue:
                if m.type == type_ and pred(m):
                    raise AssertionError(f"peer {self.id}: unexpected {m}")
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._fill(left)

    def request(self, to, op, req_id=1, args=None):
        self.send(msg(Type.REQUEST, to=to, req_id=req_id, op=op, arg=args))
        return self.expect(Type.RESPONSE, lambda m: m.req_id == req_id)

    def stats(self):
        r = self.request("broker", "stats", req_id=random.randint(1, 2**31))
        assert r.code == Code.OK
        return {k: int(v) for k, v in (a.decode().split("=") for a in r.arg)}

    def sync(self):
        """A round trip through the broker: everything sent before is handled."""
        self.stats()


@pytest.fixture
def broker():
    b = Broker()
    yield b
    code = b.stop()
    text = b.log_text()
    b.cleanup()
    assert code == 0, text
    assert_clean(text)


def assert_clean(text):
    """Under the sanitizers an error or a leak shows in the log."""
    assert "Sanitizer" not in text and "runtime error" not in text, text


def stanza(to, from_="a@example.org/r", skind=Skind.MESSAGE, **fields):
    return msg(Type.STANZA, skind=skind, to=to, from_=from_, **fields)


def unavailable(frm):
    return lambda m: (m.skind == Skind.PRESENCE and m.type_ == "unavailable" and m.from_ == frm)


# ---- link ----

def test_hello_welcome(broker):
    a = broker.peer()
    b = broker.peer()
    assert a.id and b.id and a.id != b.id
    assert a.epoch == b.epoch and a.epoch > 1_500_000_000 * 10**9
    # HELLO again from a known identity: a new id, same epoch.
    old = a.id
    a.hello()
    assert a.id not in (0, old, b.id)
    # Heartbeats reach peers.
    b.expect(Type.LINK_HEARTBEAT, timeout=3)


def test_rehello_for_unknown_peer(broker):
    p = broker.peer(hello=False)
    p.send(stanza("b@example.org/r"), msg(Type.LINK_HEARTBEAT))
    r = p.expect(Type.LINK_REHELLO)
    assert r.reason
    # Then it may join.
    p.hello()
    assert p.id
    # A BYE from a stranger is simply ignored.
    q = broker.peer(hello=False)
    q.send(msg(Type.LINK_BYE))
    q.expect_none(Type.LINK_REHELLO, timeout=0.3)


# ---- routing ----

def test_routing_full_and_bare(broker):
    a = broker.peer()
    b = broker.peer()
    b.send(msg(Type.SESSION_ADD, from_="bob@example.org/phone", conn=7, priority=5),
           msg(Type.SESSION_ADD, from_="bob@example.org/pc", conn=8, priority=1))
    b.sync()
    a.send(stanza("bob@example.org/phone", id="m1", body=b"hello"))
    m = b.expect(Type.STANZA)
    assert m.worker == a.id and m.target == [7]
    assert m.body == b"hello" and m.id == "m1" and m.from_ == "a@example.org/r"
    # The body was copied: every original field is there.
    assert m.skind == Skind.MESSAGE and m.to == "bob@example.org/phone"

    # Bare: messages go to the highest priority, presences to all.
    a.send(stanza("bob@example.org", id="m2"))
    m = b.expect(Type.STANZA, lambda m: m.id == "m2")
    assert m.target == [7]
    a.send(stanza("bob@example.org", id="p1", skind=Skind.PRESENCE))
    m = b.expect(Type.STANZA, lambda m: m.id == "p1")
    assert sorted(m.target) == [7, 8]

    # Negative priorities only: to the domain's route, without targets.
    b.send(msg(Type.SESSION_ADD, from_="bob@example.org/phone", conn=7, priority=-1),
           msg(Type.SESSION_ADD, from_="bob@example.org/pc", conn=8, priority=-1))
    b.sync()
    c = broker.peer()
    c.send(msg(Type.ROUTE_ADD, address="example.org"))
    c.sync()
    a.send(stanza("bob@example.org", id="m3"))
    m = c.expect(Type.STANZA, lambda m: m.id == "m3")
    assert m.target == [] and m.worker == a.id
    b.expect_none(Type.STANZA, lambda m: m.id == "m3", timeout=0.2)

    # Deleted session: to the domain route as well.
    b.send(msg(Type.SESSION_DEL, from_="bob@example.org/phone"))
    b.sync()
    a.send(stanza("bob@example.org/phone", id="m4"))
    c.expect(Type.STANZA, lambda m: m.id == "m4" and m.target == [])


def test_bounce_without_route(broker):
    a = broker.peer()
    a.send(stanza("nobody@nowhere.example/x", id="q1", conn=42, body=b"x"))
    m = a.expect(Type.STANZA)
    assert m.type_ == "error" and m.reason == "service-unavailable"
    assert m.id == "q1" and m.from_ == "nobody@nowhere.example/x" and m.to == "a@example.org/r"
    assert m.target == [42] and m.skind == Skind.MESSAGE
    # Errors are not bounced back.
    a.send(stanza("nobody@nowhere.example", id="q2", type_="error"))
    a.expect_none(Type.STANZA, timeout=0.3)
    st = a.stats()
    assert st["stanzas_bounced"] == 1 and st["stanzas_dropped"] == 1
    # The "*" route catches it once announced.
    s2s = broker.peer()
    s2s.send(msg(Type.ROUTE_ADD, address="*"))
    s2s.sync()
    a.send(stanza("nobody@nowhere.example", id="q3"))
    s2s.expect(Type.STANZA, lambda m: m.id == "q3")


def test_publish_interests(broker):
    a = broker.peer()
    b = broker.peer()
    c = broker.peer()
    b.send(msg(Type.INTEREST_ADD, topic="home/+/temp"), msg(Type.INTEREST_ADD, topic="home/#"))
    c.send(msg(Type.INTEREST_ADD, topic="#"))
    a.send(msg(Type.INTEREST_ADD, topic="#"))
    b.sync()
    c.sync()
    a.send(msg(Type.STANZA, skind=Skind.PUBLISH, topic="home/kitchen/temp", payload=b"21",
               qos=1, id="p1"))
    mb = b.expect(Type.STANZA)
    mc = c.expect(Type.STANZA)
    assert mb.payload == b"21" and mb.worker == a.id and mb.target == [] and mb.qos == 1
    assert mc.id == "p1"
    # Once per peer even with two matching filters; never back to the sender.
    b.expect_none(Type.STANZA, timeout=0.2)
    a.expect_none(Type.STANZA, timeout=0.1)
    # '$' topics are not matched by '#'.
    a.send(msg(Type.STANZA, skind=Skind.PUBLISH, topic="$SYS/x", payload=b""))
    c.expect_none(Type.STANZA, timeout=0.3)
    # A publish without a topic is dropped.
    a.send(msg(Type.STANZA, skind=Skind.PUBLISH, payload=b""))
    st = a.stats()
    assert st["stanzas_dropped"] == 1 and st["publishes_unmatched"] == 1
    assert st["interests"] == 4


def test_requests(broker):
    a = broker.peer()
    store = broker.peer(kind="teststore")
    store.send(msg(Type.ROUTE_ADD, address="store"))
    store.sync()
    a.send(msg(Type.REQUEST, to="store", req_id=5, op="get", arg=[b"x", b"y"]))
    q = store.expect(Type.REQUEST)
    assert q.worker == a.id and q.op == "get" and q.arg == [b"x", b"y"] and q.req_id == 5
    store.send(msg(Type.RESPONSE, worker=a.id, req_id=5, code=Code.OK, arg=[b"v"]))
    r = a.expect(Type.RESPONSE)
    assert r.req_id == 5 and r.code == Code.OK and r.arg == [b"v"] and r.worker == a.id

    r = a.request("nosuch", "get", req_id=6)
    assert r.code == Code.UNAVAILABLE and "nosuch" in r.reason and r.worker == a.id

    r = a.request("broker", "frobnicate", req_id=7)
    assert r.code == Code.BAD_REQUEST

    # A response for a peer that does not exist is dropped and counted.
    store.send(msg(Type.RESPONSE, worker=999999, req_id=1, code=Code.OK))
    assert store.stats()["responses_dropped"] == 1


def test_broker_ops(broker):
    a = broker.peer(kind="ctl")
    b = broker.peer(kind="mqtt", pid=4242)
    b.send(msg(Type.SESSION_ADD, from_="z@example.org/r", conn=3, priority=2),
           msg(Type.SESSION_ADD, from_="m@example.org/r", conn=9))
    b.sync()
    r = a.request("broker", "sessions")
    assert r.code == Code.OK
    assert [x.decode() for x in r.arg] == ["m@example.org/r mqtt 9 0", "z@example.org/r mqtt 3 2"]
    r = a.request("broker", "peers")
    rows = [x.decode().split() for x in r.arg]
    assert [row[:3] for row in rows] == [[str(a.id), "ctl", str(a.pid)],
                                         [str(b.id), "mqtt", "4242"]]
    st = a.stats()
    for name in ("frames_in", "messages_in", "stanzas_routed", "stanzas_bounced",
                 "stanzas_dropped", "presence_unavailable_sent", "malformed", "send_failed",
                 "peers", "routes", "sessions", "interests", "peers_dead"):
        assert name in st, name
    assert st["peers"] == 2 and st["sessions"] == 2


def test_sessions_listing_is_bounded(broker):
    a = broker.peer()
    # About 60 bytes per row: 50,000 rows do not fit one 2 MB message.
    n = 50000
    batch = []
    for i in range(n):
        batch.append(msg(Type.SESSION_ADD, from_=f"user{i:06d}@bounded.example.org/resource",
                         conn=i))
        if len(batch) == 1000:
            a.send(*batch)
            batch = []
    r = a.request("broker", "sessions", req_id=9)
    assert r.code == Code.OK and r.reason.startswith("truncated: ")
    shown = int(r.reason.split()[1])
    assert shown == len(r.arg) and 10000 < shown < n and r.reason.endswith(f"of {n} sessions")
    rows = [x.decode() for x in r.arg]
    assert rows == sorted(rows) and rows[0] == "user000000@bounded.example.org/resource test 0 0"
    assert a.stats()["sessions"] == n


# ---- death ----

def test_bye_sends_unavailable(broker):
    x = broker.peer(kind="xmpp")
    b = broker.peer()
    b.send(msg(Type.SESSION_ADD, from_="bob@example.org/phone", conn=1),
           msg(Type.SESSION_ADD, from_="eve@example.org/pc", conn=2))
    b.sync()
    store = broker.peer(kind="store")
    ctl = broker.peer(kind="ctl")
    b.send(msg(Type.LINK_BYE))
    p1 = x.expect(Type.STANZA, unavailable("bob@example.org/phone"))
    assert p1.to == "bob@example.org" and p1.worker == b.id and p1.target == []
    x.expect(Type.STANZA, unavailable("eve@example.org/pc"))
    # The store and tools are not told.
    store.expect_none(Type.STANZA, timeout=0.2)
    ctl.expect_none(Type.STANZA, timeout=0.1)
    st = x.stats()
    assert st["sessions"] == 0 and st["peers_bye"] == 1 and st["presence_unavailable_sent"] == 2
    # The gone peer is a stranger now.
    b.send(msg(Type.LINK_HEARTBEAT))
    b.expect(Type.LINK_REHELLO)


def test_heartbeat_timeout():
    broker = Broker(heartbeat_ms=100, misses=3)
    try:
        x = broker.peer(kind="irc")
        quiet = broker.peer()
        quiet.send(msg(Type.SESSION_ADD, from_="q@example.org/r", conn=5))
        quiet.sync()
        # x keeps beating; quiet says nothing more.
        deadline = time.monotonic() + 5
        got = None
        while time.monotonic() < deadline and got is None:
            x.send(msg(Type.LINK_HEARTBEAT, conns=3))
            try:
                got = x.expect(Type.STANZA, unavailable("q@example.org/r"), timeout=0.05)
            except AssertionError:
                pass
        assert got is not None and got.worker == quiet.id
        st = x.stats()
        assert st["peers_dead"] == 1 and st["peers"] == 1
        # The silent peer learns it must HELLO again.
        quiet.send(msg(Type.LINK_HEARTBEAT))
        quiet.expect(Type.LINK_REHELLO)
    finally:
        assert broker.stop() == 0, broker.log_text()
        assert_clean(broker.log_text())
        broker.cleanup()


def test_new_incarnation_replaces_worker(broker):
    watcher = broker.peer(kind="rooms")
    old = broker.peer(kind="xmpp", pid=100)
    old.send(msg(Type.SESSION_ADD, from_="u@example.org/r", conn=1),
             msg(Type.ROUTE_ADD, address="example.org"))
    old.sync()
    new = broker.peer(kind="xmpp", pid=101)
    m = watcher.expect(Type.STANZA, unavailable("u@example.org/r"))
    assert m.worker == old.id
    st = watcher.stats()
    assert st["peers_dead"] == 1 and st["routes"] == 0 and st["peers"] == 2
    # Other kinds may have many peers.
    t1, t2 = broker.peer(kind="test", pid=1), broker.peer(kind="test", pid=2)
    assert new.stats()["peers"] == 4 and t1.id != t2.id


def test_relinked_worker_replaces_its_old_link_quietly(broker):
    watcher = broker.peer(kind="rooms")
    old = broker.peer(kind="mqtt", pid=300)
    old.send(msg(Type.SESSION_ADD, from_="u@example.org/r", conn=1),
             msg(Type.ROUTE_ADD, address="example.org"))
    old.sync()
    # The same process opens a new socket and re-announces.
    new = broker.peer(kind="mqtt", pid=300)
    new.send(msg(Type.SESSION_ADD, from_="u@example.org/r", conn=1),
             msg(Type.ROUTE_ADD, address="example.org"))
    st = new.stats()
    assert st["peers"] == 2 and st["sessions"] == 1 and st["routes"] == 1
    assert st["peers_dead"] == 0 and st["presence_unavailable_sent"] == 0
    watcher.expect_none(Type.STANZA, timeout=0.3)
    old.expect_none(Type.LINK_DISCONNECT, timeout=0.1)
    # The route now leads to the new link.
    watcher.send(stanza("x@example.org", id="r1"))
    new.expect(Type.STANZA, lambda m: m.id == "r1")


# ---- malformed input ----

def test_malformed_frame_disconnects(broker):
    watcher = broker.peer(kind="sip")
    bad = broker.peer()
    bad.send(msg(Type.SESSION_ADD, from_="v@example.org/r", conn=1))
    bad.sync()
    # A valid message then a truncated one in the same frame: the first is
    # acted on, then the peer is disconnected.
    bad.send_raw(frame(msg(Type.ROUTE_ADD, address="early.example")) + b"\x14\x00\x00")
    d = bad.expect(Type.LINK_DISCONNECT)
    assert d.reason
    watcher.expect(Type.STANZA, unavailable("v@example.org/r"))
    st = watcher.stats()
    assert st["malformed"] == 1 and st["peers_dead"] == 1 and st["routes"] == 0
    assert "malformed" in broker.log_text()


@pytest.mark.parametrize("case", [
    "broker-type", "worker-field", "target-field", "multipart", "version", "bad-kind"])
def test_contract_violations(broker, case):
    p = broker.peer()
    if case == "broker-type":
        p.send(msg(Type.LINK_WELCOME, worker=1, epoch=1))
    elif case == "worker-field":
        p.send(stanza("x@example.org/r", worker=5))
    elif case == "target-field":
        p.send(stanza("x@example.org/r", target=[1]))
    elif case == "multipart":
        p.send_raw([frame(msg(Type.LINK_HEARTBEAT)), frame(msg(Type.LINK_HEARTBEAT))])
    elif case == "version":
        p.send_raw(b"\x02" + msg(Type.LINK_HEARTBEAT))
    elif case == "bad-kind":
        p.send(msg(Type.LINK_HELLO, kind="Bad Kind!", pid=1))
    p.expect(Type.LINK_DISCONNECT)
    other = broker.peer()
    assert other.stats()["malformed"] == 1


def test_garbage_never_crashes(broker):
    rng = random.Random(1234)
    good = msg(Type.STANZA, skind=Skind.MESSAGE, to="a@b/c", body=b"x" * 20)
    cases = [b"", b"\x01", b"\x00", b"\xff" * 100, frame() + b"\x14",
             frame(raw_msg(Type.STANZA, field(Tag.SKIND, b"\x09"))),
             frame(raw_msg(Type.STANZA, field(Tag.SKIND, b"\x01\x02"))),
             frame(raw_msg(Type.STANZA, struct.pack(">BI", Tag.BODY, 0xffffffff))),
             frame(raw_msg(99, b"")),
             frame(raw_msg(Type.RESPONSE, field(Tag.WORKER, 1) + field(Tag.REQ_ID, 1) +
                           field(Tag.CODE, 77))),
             frame(raw_msg(Type.SESSION_ADD, field(Tag.FROM, "a@b/c") + field(Tag.CONN, 1) +
                           field(Tag.FROM, "d@e/f"))),
             frame(msg(Type.LINK_HELLO, kind="x" * 40, pid=1))]
    for _ in range(300):
        data = bytearray(frame(good, good))
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cases.append(bytes(data[:rng.randint(1, len(data))]))
    for _ in range(50):
        cases.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
    # Strangers and known peers alike; a known peer is replaced after each
    # disconnect so that later cases hit a live peer again.
    stranger = broker.peer(hello=False)
    victim = broker.peer()
    for data in cases:
        stranger.send_raw(data)
        victim.send_raw(data)
        if victim.sock.poll(0):
            for m in decode(victim.sock.recv()):
                if m.type == Type.LINK_DISCONNECT:
                    victim.hello()
    # Session tables and routing still work.
    a, b = broker.peer(), broker.peer()
    b.send(msg(Type.SESSION_ADD, from_="ok@example.org/r", conn=1))
    b.sync()
    a.send(stanza("ok@example.org/r", id="alive"))
    b.expect(Type.STANZA, lambda m: m.id == "alive")
    assert broker.alive()
    assert a.stats()["malformed"] > 0


def test_oversized_frame_is_refused(broker):
    p = broker.peer()
    # Beyond IPC_MAX_FRAME: ZeroMQ itself drops the connection.
    p.send_raw(b"\x01" + b"\x00" * (8 << 20))
    # The DEALER reconnects under a new routing id: a stranger now.
    p.send(msg(Type.LINK_HEARTBEAT))
    p.expect(Type.LINK_REHELLO, timeout=5)
    # Its first identity stays a peer until its heartbeats are missed.
    other = broker.peer()
    assert other.stats()["peers"] == 2
    assert broker.alive()


# ---- process contract ----

def test_supervised_ready_and_life_pipe():
    broker = Broker(supervised=True)
    try:
        assert select.select([broker.status_r], [], [], 5)[0], "no READY"
        assert os.read(broker.status_r, 64) == b"READY\n"
        p = broker.peer()
        assert p.id
        os.close(broker.life_w)
        broker.life_w = None
        assert broker.proc.wait(5) == 0
    finally:
        broker.stop()
        broker.cleanup()


def test_sigterm_exits_zero_and_removes_socket():
    broker = Broker()
    try:
        broker.peer().sync()
        broker.proc.send_signal(signal.SIGTERM)
        assert broker.proc.wait(5) == 0
        assert not os.path.exists(broker.socket_path)
        assert_clean(broker.log_text())
    finally:
        broker.stop()
        broker.cleanup()


def test_bad_config_exits_78():
    folder = tempfile.mkdtemp(prefix="sbb", dir="/tmp")
    try:
        path = os.path.join(folder, "bad.yml")
        with open(path, "w") as f:
            f.write("no_such_key: 1\n")
        r = subprocess.run([BROKER, "--config", path], capture_output=True, timeout=10)
        assert r.returncode == 78 and b"no_such_key" in r.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)
