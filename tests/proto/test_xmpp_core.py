"""Black-box tests of switchboard-xmpp's core: streams, STARTTLS and direct
TLS, SASL, resource binding, routing through the broker, the server iqs,
and hostile input.

A whole tree runs per module (the real supervisor, broker, store and
switchboard-xmpp); accounts are made with switchboardctl. Real clients:
slixmpp (python3-slixmpp) and go-sendxmpp. Hostile cases use raw sockets;
each of them binds its own loopback source address (127.0.0.N), because
the worker counts SASL failures per client address and would otherwise
start refusing the other tests' logins.
"""
import asyncio
import base64
import hashlib
import hmac
import itertools
import os
import re
import socket
import ssl
import subprocess
import time

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from sbtree import Tree, wait_for, xmpp_tree

DOMAIN = "example.org"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
STREAM_OPEN = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>")
TIMEOUT = 15

_source = itertools.count(10)


def next_source():
    """A fresh loopback source address for one raw connection."""
    n = next(_source)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    t = xmpp_tree(tmp_path_factory.mktemp("xmpp"), ("alice", "bob", "carol", "dave", "erin"), DOMAIN)
    yield t
    t.stop()



def port(tree, listener="c2s"):
    return tree.listeners()[("xmpp", listener)]


# --- slixmpp --------------------------------------------------------------------------------

class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records what it receives.

    slixmpp 1.8.3 computes tls-unique even on TLS 1.3, where it is not
    defined (RFC 9266), and so cannot use SCRAM-*-PLUS there; over TLS 1.3
    it is limited to plain SCRAM and told that it has no channel binding
    (else it would send the 'y' flag, which a server offering -PLUS must
    refuse as a downgrade). Over TLS 1.2 it keeps tls-unique and uses -PLUS.
    """

    def __init__(self, jid, password, tls12=False, **kw):
        super().__init__(jid, password, **kw)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.messages = asyncio.Queue()
        self.started = asyncio.Event()
        self.auth_failed = asyncio.Event()
        self.closed = asyncio.Event()
        self.stream_errors = []
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        mech = self["feature_mechanisms"]
        if tls12:
            self.ssl_context.maximum_version = ssl.TLSVersion.TLSv1_2
        elif "sasl_mech" not in kw:
            mech.use_mechs = {"SCRAM-SHA-256", "SCRAM-SHA-1"}
        default = mech._default_credentials

        def credentials(required, optional):
            values = default(required, optional)
            if values.get("channel_binding") is not None and self.socket.version() == "TLSv1.3":
                values["channel_binding"] = None
            return values
        mech.sasl_callback = credentials
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("failed_auth", lambda _: self.auth_failed.set())
        self.add_event_handler("disconnected", lambda _: self.closed.set())
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(
            e["condition"]))
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("message_error", self.messages.put_nowait)

    async def login(self, address, direct_tls=False):
        if direct_tls:
            self.connect(address, use_ssl=True, disable_starttls=True)
        else:
            self.connect(address)
        await asyncio.wait_for(self.started.wait(), TIMEOUT)
        return self

    async def message(self):
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)


def run(coro):
    return asyncio.get_event_loop().run_until_complete(asyncio.wait_for(coro, 60))


async def logout(*clients):
    for c in clients:
        if not c.closed.is_set():
            c.disconnect()
    for c in clients:
        await asyncio.wait_for(c.closed.wait(), TIMEOUT)


def mechanism_logged(tree, jid, mech):
    return re.search(rf"authenticated as {re.escape(jid)} with {re.escape(mech)}\b",
                     tree.log_tail(400))


def test_starttls_scram_sha256_and_bind(tree, xmpp_pid):
    async def main():
        c = await Client(f"alice@{DOMAIN}/desk", "alice-pw",
                         sasl_mech="SCRAM-SHA-256").login(port(tree))
        assert str(c.boundjid) == f"alice@{DOMAIN}/desk"
        assert c.socket.version() == "TLSv1.3"
        await logout(c)
    run(main())
    assert mechanism_logged(tree, f"alice@{DOMAIN}", "SCRAM-SHA-256")


def test_scram_plus_with_tls_unique_over_tls12(tree, xmpp_pid):
    async def main():
        c = await Client(f"bob@{DOMAIN}/old", "bob-pw", tls12=True).login(port(tree))
        assert c.socket.version() == "TLSv1.2"
        assert c["feature_mechanisms"].mech.name.endswith("-PLUS")
        await logout(c)
    run(main())
    assert mechanism_logged(tree, f"bob@{DOMAIN}", "SCRAM-SHA-256-PLUS")


def test_direct_tls(tree, xmpp_pid):
    async def main():
        c = await Client(f"carol@{DOMAIN}", "carol-pw").login(port(tree, "c2s-tls"),
                                                               direct_tls=True)
        # No resource asked: the server made one up (RFC 6120 §7.6.2.1).
        assert c.boundjid.bare == f"carol@{DOMAIN}" and c.boundjid.resource
        await logout(c)
    run(main())


def test_wrong_password_fails(tree, xmpp_pid):
    async def main():
        c = Client(f"alice@{DOMAIN}/x", "not-the-password", sasl_mech="SCRAM-SHA-256")
        c.connect(port(tree))
        await asyncio.wait_for(c.auth_failed.wait(), TIMEOUT)
        assert not c.started.is_set()
        c.disconnect()
        await asyncio.wait_for(c.closed.wait(), TIMEOUT)
    run(main())


def test_chat_full_and_bare_jid_and_ping(tree, xmpp_pid):
    async def main():
        a = await Client(f"alice@{DOMAIN}/a1", "alice-pw").login(port(tree))
        b = await Client(f"bob@{DOMAIN}/b1", "bob-pw").login(port(tree))
        a.send_message(mto=f"bob@{DOMAIN}/b1", mbody="to your full JID", mtype="chat")
        m = await b.message()
        assert m["body"] == "to your full JID" and m["type"] == "chat"
        assert str(m["from"]) == f"alice@{DOMAIN}/a1"
        b.send_message(mto=f"alice@{DOMAIN}", mbody="to your bare JID <&>", mtype="chat")
        m = await a.message()
        assert m["body"] == "to your bare JID <&>" and str(m["from"]) == f"bob@{DOMAIN}/b1"
        # A message to an unknown resource goes to the bare JID (RFC 6121 §8.5.3.2.1).
        a.send_message(mto=f"bob@{DOMAIN}/nowhere", mbody="stray", mtype="chat")
        assert (await b.message())["body"] == "stray"
        # iq ping between the two clients, and to the server.
        await a["xep_0199"].send_ping(f"bob@{DOMAIN}/b1", timeout=TIMEOUT)
        await b["xep_0199"].send_ping(DOMAIN, timeout=TIMEOUT)
        await logout(a, b)
    run(main())


def test_message_to_offline_account_bounces(tree, xmpp_pid):
    async def main():
        a = await Client(f"alice@{DOMAIN}/a2", "alice-pw").login(port(tree))
        # No such account (an existing one would store it offline: test_xmpp_im.py).
        a.send_message(mto=f"nobody@{DOMAIN}", mbody="are you there?", mtype="chat")
        m = await a.message()
        assert m["type"] == "error" and m["error"]["condition"] == "service-unavailable"
        assert str(m["from"]) == f"nobody@{DOMAIN}"
        # An iq to a full JID without a session.
        with pytest.raises(IqError) as e:
            await a["xep_0199"].send_ping(f"erin@{DOMAIN}/gone", timeout=TIMEOUT)
        assert e.value.iq["error"]["condition"] == "service-unavailable"
        # An iq the server does not know, to the server and to the own bare JID.
        for to in (DOMAIN, f"alice@{DOMAIN}"):
            iq = a.make_iq_get(queryxmlns="jabber:iq:last", ito=to)
            with pytest.raises(IqError) as e:
                await iq.send(timeout=TIMEOUT)
            assert e.value.iq["error"]["condition"] == "service-unavailable"
        await logout(a)
    run(main())


def test_disco_info_and_version(tree, xmpp_pid):
    async def main():
        a = await Client(f"alice@{DOMAIN}/d", "alice-pw").login(port(tree))
        info = await a["xep_0030"].get_info(jid=DOMAIN, timeout=TIMEOUT)
        q = info["disco_info"]
        assert ("server", "im") in {(i[0], i[1]) for i in q["identities"]}
        assert set(q["features"]) == {
            "http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
            "urn:xmpp:ping", "jabber:iq:version", "msgoffline"}
        items = await a["xep_0030"].get_items(jid=DOMAIN, timeout=TIMEOUT)
        assert list(items["disco_items"]["items"]) == []
        iq = a.make_iq_get(queryxmlns="jabber:iq:version", ito=DOMAIN)
        r = await iq.send(timeout=TIMEOUT)
        assert "<name>Switchboard</name>" in str(r)
        await logout(a)
    run(main())


def test_resource_conflict_replaces_older_session(tree, xmpp_pid):
    async def main():
        old = await Client(f"dave@{DOMAIN}/same", "dave-pw").login(port(tree))
        new = await Client(f"dave@{DOMAIN}/same", "dave-pw").login(port(tree))
        await asyncio.wait_for(old.closed.wait(), TIMEOUT)
        assert "conflict" in old.stream_errors
        b = await Client(f"bob@{DOMAIN}/b2", "bob-pw").login(port(tree))
        b.send_message(mto=f"dave@{DOMAIN}/same", mbody="who gets this?", mtype="chat")
        assert (await new.message())["body"] == "who gets this?"
        await logout(new, b)
    run(main())


def test_go_sendxmpp_message_reaches_slixmpp(tree, xmpp_pid):
    host, p = port(tree)

    async def main():
        b = await Client(f"bob@{DOMAIN}/listen", "bob-pw").login((host, p))
        proc = await asyncio.create_subprocess_exec(
            "go-sendxmpp", "-u", f"alice@{DOMAIN}", "-p", "alice-pw", "-j", f"{host}:{p}",
            "-n", "--timeout", "10", f"bob@{DOMAIN}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(b"hello from go-sendxmpp\n"), 30)
        assert proc.returncode == 0, (out, err)
        m = await b.message()
        assert m["body"].strip() == "hello from go-sendxmpp"
        assert m["from"].bare == f"alice@{DOMAIN}"
        await logout(b)
    run(main())


# --- raw streams ----------------------------------------------------------------------------

class Raw:
    """A hand-driven XMPP stream for the cases no well-behaved client sends."""

    def __init__(self, address, direct_tls=False, source=None):
        self.sock = socket.create_connection(address, timeout=TIMEOUT,
                                             source_address=(source or next_source(), 0))
        if direct_tls:
            self._wrap()
        self.buf = b""

    def _wrap(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read_until(self, pattern, timeout=TIMEOUT):
        """Reads until pattern (a regex on the decoded stream) matches; returns the match."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.buf.decode(errors="replace"), re.S)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in {self.buf[-2000:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed before {pattern!r}; got {self.buf[-2000:]!r}")
            self.buf += chunk

    def take(self):
        data, self.buf = self.buf, b""
        return data.decode(errors="replace")

    def closed(self, timeout=TIMEOUT):
        """True once the server closed the connection (reading what is left)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    def open_stream(self, to=DOMAIN):
        self.send(STREAM_OPEN.format(to=to))
        self.read_until(r"</stream:features>")
        return self.take()

    def starttls(self):
        self.open_stream()
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(r"<proceed[^>]*/>")
        self.take()
        self._wrap()
        return self.open_stream()

    def plain(self, authcid, password, authzid=""):
        msg = f"{authzid}\0{authcid}\0{password}".encode()
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  f"{base64.b64encode(msg).decode()}</auth>")
        reply = self.read_until(r"<success[^>]*(/>|>[^<]*</success>)|<failure.*?</failure>").group(0)
        self.take()
        return reply

    def login(self, user, password, resource="raw"):
        self.starttls()
        assert "<success" in self.plain(user, password)
        self.take()
        self.open_stream()
        self.send(f"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        self.read_until(r"<jid>[^<]*</jid>")
        self.take()
        return self

    def expect_stream_error(self, condition):
        self.read_until(rf"<stream:error><{condition} xmlns='{NS_STREAMS}'/>")
        self.read_until(r"</stream:stream>")
        assert self.closed(), "the server kept the connection open"

    def close(self):
        self.sock.close()


def still_serving(tree):
    """A fresh login works: the worker serves after the hostile input."""
    r = Raw(port(tree)).login("carol", "carol-pw", "probe")
    r.send(f"<iq type='get' id='p1' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
    r.read_until(r"<iq[^>]*type='result'[^>]*id='p1'|<iq[^>]*id='p1'[^>]*type='result'")
    r.close()


HOSTILE_BEFORE_TLS = {
    "billion_laughs": ("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                       "<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
                       "<stream:stream xmlns='jabber:client' "
                       "xmlns:stream='http://etherx.jabber.org/streams' to='example.org' "
                       "version='1.0'><message>&lol2;</message>", "restricted-xml"),
    "comment": (STREAM_OPEN.format(to=DOMAIN) + "<!-- hello -->", "restricted-xml"),
    "processing_instruction": (STREAM_OPEN.format(to=DOMAIN) + "<?evil data?>",
                               "restricted-xml"),
    "invalid_utf8": (STREAM_OPEN.format(to=DOMAIN).encode() + b"<message>\xc3\x28</message>",
                     "not-well-formed"),
    "control_character": (STREAM_OPEN.format(to=DOMAIN) + "<message>\x01</message>",
                          "not-well-formed"),
    "undeclared_prefix": (STREAM_OPEN.format(to=DOMAIN) + "<foo:bar/>",
                          "(bad-namespace-prefix|not-well-formed)"),
    "unknown_host": (STREAM_OPEN.format(to="elsewhere.example"), "host-unknown"),
    "old_version": (STREAM_OPEN.format(to=DOMAIN).replace("version='1.0'", "version='0.9'"),
                    "unsupported-version"),
    "stanza_before_tls": (STREAM_OPEN.format(to=DOMAIN) + "<message to='bob@example.org'/>",
                          "policy-violation"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BEFORE_TLS))
def test_hostile_stream_gets_stream_error(tree, xmpp_pid, case):
    data, condition = HOSTILE_BEFORE_TLS[case]
    r = Raw(port(tree))
    r.send(data)
    r.expect_stream_error(condition)
    r.close()
    still_serving(tree)


def test_oversized_stanza_while_incomplete(tree, xmpp_pid):
    r = Raw(port(tree)).login("alice", "alice-pw", "big")
    r.send("<message to='bob@example.org'><body>")
    try:
        for _ in range(8):  # 512 KiB, twice the default max_stanza, never finished
            r.send("x" * 65536)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass
    r.expect_stream_error("policy-violation")
    r.close()
    still_serving(tree)


def test_deep_nesting(tree, xmpp_pid):
    r = Raw(port(tree)).login("alice", "alice-pw", "deep")
    try:
        r.send("<message>" + "<a>" * 100000)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass
    r.expect_stream_error("(policy-violation|resource-constraint)")
    r.close()
    still_serving(tree)


def test_plaintext_pipelined_after_starttls_is_discarded(tree, xmpp_pid):
    r = Raw(port(tree))
    r.open_stream()
    # The injected auth would succeed if it were read after the handshake.
    inject = base64.b64encode(b"\0alice\0alice-pw").decode()
    r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
           f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{inject}</auth>")
    r.read_until(r"<proceed[^>]*/>")
    r.take()
    r._wrap()
    features = r.open_stream()
    # A fresh stream that expects authentication: the injected <auth/> was dropped.
    assert "<mechanisms" in features and "<bind" not in features
    r.send(f"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    r.expect_stream_error("not-authorized")
    r.close()


def test_features_before_and_after_tls(tree, xmpp_pid):
    r = Raw(port(tree))
    before = r.open_stream()
    assert "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>" in before
    assert "<mechanisms" not in before
    r.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    r.read_until(r"<proceed[^>]*/>")
    r.take()
    r._wrap()
    after = r.open_stream()
    mechs = re.findall(r"<mechanism>([^<]+)</mechanism>", after)
    # -PLUS first, since channel binding is available (tls-exporter on TLS 1.3).
    assert mechs[:2] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"], mechs
    assert {"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} <= set(mechs)
    assert "<starttls" not in after
    assert "<channel-binding type='tls-exporter'/>" in after
    r.close()


def test_plain_with_another_users_authzid(tree, xmpp_pid):
    r = Raw(port(tree))
    r.starttls()
    reply = r.plain("alice", "alice-pw", authzid=f"bob@{DOMAIN}")
    assert "<invalid-authzid/>" in reply
    # The own bare JID as authzid is fine.
    reply = r.plain("alice", "alice-pw", authzid=f"alice@{DOMAIN}")
    assert "<success" in reply
    r.close()


def test_sasl_failures(tree, xmpp_pid):
    r = Raw(port(tree))
    r.starttls()
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!notbase64</auth>")
    assert "<incorrect-encoding/>" in r.read_until(r"<failure.*?</failure>").group(0)
    r.take()
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-NOPE'/>")
    assert "<invalid-mechanism/>" in r.read_until(r"<failure.*?</failure>").group(0)
    r.take()
    # The third failure (workers.xmpp.auth_failures) closes the stream.
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'/>")
    r.read_until(r"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    r.send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    assert "<aborted/>" in r.read_until(r"<failure.*?</failure>").group(0)
    r.expect_stream_error("policy-violation")
    r.close()


MALFORMED_SCRAM = [
    b"",                                   # "=": empty
    b"x,,n=alice,r=abc",                   # bad gs2 flag
    b"n,,r=abc",                           # no username
    b"n,,n=alice",                         # no nonce
    b"n,,m=ext,n=alice,r=abc",             # mandatory extension
    b"n,,n=al=ZZice,r=abc",                # bad saslname escape
    b"n,,n=alice,r=a\x00bc",               # NUL
    b"p=tls-unique,,n=alice,r=abc",        # cb type not offered on TLS 1.3
    b"n,,n=alice,r=abc" + b"A" * 9000,     # too long
]


@pytest.mark.parametrize("index", range(len(MALFORMED_SCRAM)))
def test_malformed_scram(tree, xmpp_pid, index):
    msg = MALFORMED_SCRAM[index]
    r = Raw(port(tree))
    r.starttls()
    text = base64.b64encode(msg).decode() if msg else "="
    r.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{text}</auth>")
    failure = r.read_until(r"<failure.*?</failure>").group(0)
    assert "<malformed-request/>" in failure, failure
    r.close()


def test_malformed_scram_final_message(tree, xmpp_pid):
    r = Raw(port(tree))
    r.starttls()
    first = base64.b64encode(b"n,,n=alice,r=clientnonce").decode()
    r.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>")
    r.read_until(r"<challenge[^>]*>[^<]+</challenge>")
    bad = base64.b64encode(b"c=biws,r=wrongnonce,p=AAAA").decode()
    r.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{bad}</response>")
    assert "<failure" in r.read_until(r"<failure.*?</failure>").group(0)
    r.close()


class Scram:
    """The client side of SCRAM-SHA-256(-PLUS), for channel binding tests."""

    def __init__(self, user, password, cb_type=None, cb_data=b""):
        self.user, self.password = user, password
        self.gs2 = (f"p={cb_type},," if cb_type else "n,,").encode()
        self.cb_data = cb_data
        self.nonce = base64.b64encode(os.urandom(18)).decode()

    def first(self):
        self.bare = f"n={self.user},r={self.nonce}".encode()
        return self.gs2 + self.bare

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored = hashlib.sha256(client_key).digest()
        cbind = base64.b64encode(self.gs2 + self.cb_data).decode()
        without_proof = f"c={cbind},r={attrs['r']}".encode()
        auth = self.bare + b"," + server_first + b"," + without_proof
        sig = hmac.new(stored, auth, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        return without_proof + b",p=" + base64.b64encode(proof)


def scram_login(r, scram, mech):
    r.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>"
           f"{base64.b64encode(scram.first()).decode()}</auth>")
    ch = r.read_until(r"<challenge[^>]*>([^<]+)</challenge>").group(1)
    r.take()
    final = scram.final(base64.b64decode(ch))
    r.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
           f"{base64.b64encode(final).decode()}</response>")
    return r.read_until(r"<success.*?(/>|</success>)|<failure.*?</failure>").group(0)


def test_scram_plus_tls_server_end_point(tree, xmpp_pid):
    r = Raw(port(tree))
    r.starttls()
    cert = r.sock.getpeercert(binary_form=True)
    # The dev certificate is ECDSA with SHA-256: RFC 5929 §4.1 hashes it with SHA-256.
    good = Scram("alice", "alice-pw", "tls-server-end-point", hashlib.sha256(cert).digest())
    assert "<success" in scram_login(r, good, "SCRAM-SHA-256-PLUS")
    r.close()
    # Binding data of another channel (what a man in the middle would have) fails.
    r = Raw(port(tree))
    r.starttls()
    bad = Scram("alice", "alice-pw", "tls-server-end-point", b"\x00" * 32)
    assert "<not-authorized/>" in scram_login(r, bad, "SCRAM-SHA-256-PLUS")
    r.close()


def test_spoofed_from_closes_the_stream(tree, xmpp_pid):
    r = Raw(port(tree)).login("alice", "alice-pw", "spoof")
    r.send(f"<message from='bob@{DOMAIN}/b1' to='carol@{DOMAIN}'><body>hi</body></message>")
    r.expect_stream_error("invalid-from")
    r.close()


def test_own_bare_from_is_accepted_and_stamped(tree, xmpp_pid):
    b = Raw(port(tree)).login("bob", "bob-pw", "stamp")
    a = Raw(port(tree)).login("alice", "alice-pw", "stamp")
    a.send(f"<message from='alice@{DOMAIN}' to='bob@{DOMAIN}/stamp' type='chat'>"
           "<body>stamped</body></message>")
    m = b.read_until(r"<message[^>]*>.*?</message>").group(0)
    assert f"from='alice@{DOMAIN}/stamp'" in m and "<body>stamped</body>" in m
    a.close()
    b.close()


def test_oversized_and_malformed_jids(tree, xmpp_pid):
    r = Raw(port(tree)).login("alice", "alice-pw", "jids")
    for i, to in enumerate([("a" * 1024) + f"@{DOMAIN}", f"bob@{DOMAIN}/" + "r" * 1024,
                            "bad@@example.org", f"bo&lt;b@{DOMAIN}", "x" * 5000]):
        r.send(f"<message id='m{i}' to='{to}'><body>x</body></message>")
        m = r.read_until(rf"<message[^>]*id='m{i}'[^>]*>.*?</message>").group(0)
        assert "type='error'" in m and f"<jid-malformed xmlns='{NS_STANZAS}'/>" in m, m
        r.take()
    # The session lives on.
    r.send(f"<iq type='get' id='p' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
    r.read_until(r"id='p'[^>]*/>|id='p'")
    r.close()


def test_oversized_resource_at_bind(tree, xmpp_pid):
    r = Raw(port(tree))
    r.starttls()
    assert "<success" in r.plain("alice", "alice-pw")
    r.take()
    r.open_stream()
    r.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           f"<resource>{'r' * 1024}</resource></bind></iq>")
    m = r.read_until(r"<iq[^>]*>.*?</iq>").group(0)
    assert "type='error'" in m and "<bad-request" in m
    r.take()
    r.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>ok</resource></bind></iq>")
    assert r.read_until(r"<jid>([^<]*)</jid>").group(1) == f"alice@{DOMAIN}/ok"
    r.close()


def test_iq_rules(tree, xmpp_pid):
    r = Raw(port(tree)).login("alice", "alice-pw", "iqs")
    # Two payloads in a get (RFC 6120 §8.2.3).
    r.send(f"<iq type='get' id='two' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/>"
           "<ping xmlns='urn:xmpp:ping'/></iq>")
    assert "<bad-request" in r.read_until(r"<iq[^>]*id='two'.*?</iq>").group(0)
    # No id.
    r.send(f"<iq type='get' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "<bad-request" in r.read_until(r"<iq[^>]*type='error'>.*?</iq>").group(0)
    r.take()
    # An unknown type.
    r.send(f"<iq type='fetch' id='t' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "<bad-request" in r.read_until(r"<iq[^>]*id='t'.*?</iq>").group(0)
    r.take()
    # Not a stanza of jabber:client.
    r.send("<foo xmlns='urn:example:nope'/>")
    r.expect_stream_error("unsupported-stanza-type")
    r.close()


def test_stanza_before_auth_and_before_bind(tree, xmpp_pid):
    r = Raw(port(tree))
    r.starttls()
    r.send(f"<message to='bob@{DOMAIN}'><body>x</body></message>")
    r.expect_stream_error("not-authorized")
    r.close()
    r = Raw(port(tree))
    r.starttls()
    assert "<success" in r.plain("alice", "alice-pw")
    r.take()
    features = r.open_stream()
    assert f"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in features
    r.send(f"<message to='bob@{DOMAIN}'><body>x</body></message>")
    r.expect_stream_error("not-authorized")
    r.close()


def test_client_closes_the_stream(tree, xmpp_pid):
    r = Raw(port(tree)).login("alice", "alice-pw", "bye")
    r.send("</stream:stream>")
    r.read_until(r"</stream:stream>")
    assert r.closed()
    r.close()


# --- limits, with their own tree ------------------------------------------------------------

@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    t = Tree(tmp_path_factory.mktemp("tight"), workers=("xmpp",), real=("xmpp",),
             worker_options={"xmpp": {"max_sessions_per_account": 2,
                                      "max_connections_per_ip": 3}},
             extra="limits: {idle_timeout: 2}").start()
    r = t.ctl("register", "alice", DOMAIN, "alice-pw")
    assert r.returncode == 0, r.stderr
    yield t
    t.stop()


def test_max_sessions_per_account(tight):
    a = Raw(port(tight)).login("alice", "alice-pw", "one")
    b = Raw(port(tight)).login("alice", "alice-pw", "two")
    c = Raw(port(tight))
    c.starttls()
    assert "<success" in c.plain("alice", "alice-pw")
    c.take()
    c.open_stream()
    c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>three</resource></bind></iq>")
    m = c.read_until(r"<iq[^>]*>.*?</iq>").group(0)
    assert "<resource-constraint" in m and "type='wait'" in m
    for r in (a, b, c):
        r.close()


def test_connections_per_ip(tight):
    source = next_source()
    held = [Raw(port(tight), source=source) for _ in range(3)]
    for r in held:
        r.open_stream()
    extra = Raw(port(tight), source=source)
    extra.expect_stream_error("policy-violation")
    extra.close()
    # Another address is not affected.
    Raw(port(tight)).open_stream()
    for r in held:
        r.close()


def test_preauth_timeout(tight):
    r = Raw(port(tight))
    r.open_stream()
    r.expect_stream_error("connection-timeout")
    r.close()


def test_auth_failures_per_address_are_throttled(tight):
    source = next_source()
    for _ in range(5):
        r = Raw(port(tight), source=source)
        r.starttls()
        assert "<not-authorized/>" in r.plain("alice", "wrong")
        r.close()
    # Even the right password is refused for a while from that address...
    r = Raw(port(tight), source=source)
    r.starttls()
    assert "<temporary-auth-failure/>" in r.plain("alice", "alice-pw")
    r.close()
    # ...but not from another one.
    r = Raw(port(tight))
    r.starttls()
    assert "<success" in r.plain("alice", "alice-pw")
    r.close()


def test_rate_shaper_slows_a_flood(tight):
    """1.5 MiB of whitespace keepalives: the first MiB passes at once, the rest at 100 KiB/s."""
    r = Raw(port(tight)).login("alice", "alice-pw", "flood")
    r.sock.settimeout(30)
    start = time.monotonic()
    blob = b" " * 65536
    for _ in range(24):
        r.send(blob)
    r.send(f"<iq type='get' id='after' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
    r.read_until(r"id='after'", timeout=30)
    elapsed = time.monotonic() - start
    # 0.5 MiB beyond the burst at 100 KiB/s is about 5 s.
    assert elapsed > 3.5, elapsed
    r.close()


# --- the worker restarting --------------------------------------------------------------------

def test_restart_worker_while_connected(tree):
    async def main():
        a = await Client(f"alice@{DOMAIN}/r", "alice-pw").login(port(tree))
        old = tree.pid("xmpp")
        r = tree.ctl("restart", "xmpp")
        assert r.returncode == 0, r.stderr
        await asyncio.wait_for(a.closed.wait(), TIMEOUT)
        wait_for(lambda: tree.status()["xmpp"]["state"] == "running"
                 and tree.pid("xmpp") != old, what="xmpp restarted")
        a2 = await Client(f"alice@{DOMAIN}/r", "alice-pw").login(port(tree))
        b = await Client(f"bob@{DOMAIN}/r", "bob-pw").login(port(tree))
        b.send_message(mto=f"alice@{DOMAIN}/r", mbody="after the restart", mtype="chat")
        assert (await a2.message())["body"] == "after the restart"
        await logout(a2, b)
    run(main())
