"""Black-box tests of switchboard-xmpp's presence layer: subscriptions
(RFC 6121 §3 and its Appendix A state tables, pre-approval §3.4, requests
kept offline §3.1.3) and presence broadcast, probes and unavailable
presence on disconnect (§4).

A whole tree runs per module (the real supervisor, broker, store and
switchboard-xmpp); every test uses its own pair of accounts, so that
roster states do not carry over between tests.
"""
import asyncio

import pytest

from sbtree import xmpp_tree
from test_xmpp_core import Client as CoreClient
from test_xmpp_core import DOMAIN, TIMEOUT, logout, port, run

NS_ROSTER = "jabber:iq:roster"

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "oscar", "peggy")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    t = xmpp_tree(tmp_path_factory.mktemp("xmpp-presence"), USERS, DOMAIN)
    yield t
    t.stop()



class Client(CoreClient):
    """A client that answers nothing by itself and records every presence
    and roster push it receives."""

    def __init__(self, user, resource="r"):
        super().__init__(f"{user}@{DOMAIN}/{resource}", f"{user}-pw")
        self.auto_authorize = None
        self.auto_subscribe = False
        self.presences = asyncio.Queue()
        self.pushes = asyncio.Queue()
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("roster_update",
                               lambda iq: iq["type"] == "set" and self.pushes.put_nowait(iq))

    async def presence(self, ptype=None, pfrom=None):
        """The next presence (of type ptype, from pfrom's bare JID when given)."""
        while True:
            p = await asyncio.wait_for(self.presences.get(), TIMEOUT)
            if (ptype is None or p["type"] == ptype) and \
               (pfrom is None or p["from"].bare == pfrom):
                return p

    async def no_presence(self, seconds=1.5):
        with pytest.raises(asyncio.TimeoutError):
            p = await asyncio.wait_for(self.presences.get(), seconds)
            pytest.fail(f"unexpected presence {p}")

    async def push_for(self, contact):
        """The next roster push's item for contact: (subscription, ask, approved)."""
        while True:
            iq = await asyncio.wait_for(self.pushes.get(), TIMEOUT)
            items = iq["roster"]["items"]
            if contact in items:
                return item_state(iq, contact)

    async def roster_state(self, contact):
        iq = await self.make_iq_get(queryxmlns=NS_ROSTER).send(timeout=TIMEOUT)
        return item_state(iq, contact)


def item_state(iq, contact):
    """(subscription, ask, approved) of contact's item in a roster iq, or None."""
    for item in iq.xml.iter(f"{{{NS_ROSTER}}}item"):
        if item.get("jid") == contact:
            return (item.get("subscription"), item.get("ask"), item.get("approved"))
    return None


def jid(user):
    return f"{user}@{DOMAIN}"


async def online(tree, user, resource="r"):
    """Logged in, roster fetched (so it gets pushes), initial presence sent."""
    c = await Client(user, resource).login(port(tree))
    await c.get_roster(timeout=TIMEOUT)
    c.send_presence()
    return c


async def drain(c, seconds=1.0):
    """Every presence c receives until seconds pass without one."""
    got = []
    try:
        while True:
            got.append(await asyncio.wait_for(c.presences.get(), seconds))
    except asyncio.TimeoutError:
        return got


async def subscribe_mutually(a, b, user_a, user_b):
    """a subscribes to b, b approves; then the reverse: both rosters 'both'."""
    a.send_presence(pto=jid(user_b), ptype="subscribe")
    assert await a.push_for(jid(user_b)) == ("none", "subscribe", None)
    req = await b.presence("subscribe", jid(user_a))
    assert str(req["from"]) == jid(user_a)
    b.send_presence(pto=jid(user_a), ptype="subscribed")
    assert await b.push_for(jid(user_a)) == ("from", None, None)
    assert await a.push_for(jid(user_b)) == ("to", None, None)
    b.send_presence(pto=jid(user_a), ptype="subscribe")
    assert await b.push_for(jid(user_a)) == ("from", "subscribe", None)
    await a.presence("subscribe", jid(user_b))
    a.send_presence(pto=jid(user_b), ptype="subscribed")
    assert await a.push_for(jid(user_b)) == ("both", None, None)
    assert await b.push_for(jid(user_a)) == ("both", None, None)


def test_subscribe_approve_and_mutual(tree, xmpp_pid):
    async def main():
        a = await online(tree, "alice")
        b = await online(tree, "bob")
        await subscribe_mutually(a, b, "alice", "bob")
        assert await a.roster_state(jid("bob")) == ("both", None, None)
        assert await b.roster_state(jid("alice")) == ("both", None, None)
        # A roster set changes the name and groups, never the subscription
        # (RFC 6121 §2.1.2.5).
        await a.update_roster(jid("bob"), name="Bobby", groups=["Friends"], timeout=TIMEOUT)
        assert await a.push_for(jid("bob")) == ("both", None, None)
        iq = await a.make_iq_get(queryxmlns=NS_ROSTER).send(timeout=TIMEOUT)
        item = iq["roster"]["items"][jid("bob")]
        assert (item["name"], item["subscription"], item["groups"]) == ("Bobby", "both", ["Friends"])
        await logout(a, b)
    run(main())


def test_pending_request_waits_offline_and_presence_follows(tree, xmpp_pid):
    async def main():
        a = await online(tree, "carol")
        a.send_presence(pto=jid("dave"), ptype="subscribe")
        assert await a.push_for(jid("dave")) == ("none", "subscribe", None)
        await asyncio.sleep(0.5)

        # dave logs in later: the request was kept for him.
        d = await online(tree, "dave")
        req = await d.presence("subscribe", jid("carol"))
        assert req["from"].bare == jid("carol")
        d.send_presence(pto=jid("carol"), ptype="subscribed")
        assert await a.push_for(jid("dave")) == ("to", None, None)
        # §3.1.5: the approval brings dave's current presence.
        p = await a.presence(None, jid("dave"))
        assert p["type"] == "available"
        await logout(d)
        p = await a.presence("unavailable", jid("dave"))
        assert str(p["from"]) == f"{jid('dave')}/r"

        # dave comes online: carol sees it, and then the dropped connection.
        d = await online(tree, "dave", "phone")
        p = await a.presence("available", jid("dave"))
        assert str(p["from"]) == f"{jid('dave')}/phone"
        d.transport.abort()  # no </stream>, no unavailable from the client
        p = await a.presence("unavailable", jid("dave"))
        assert str(p["from"]) == f"{jid('dave')}/phone"

        # The request is not delivered a second time.
        d = await online(tree, "dave", "again")
        assert [p for p in await drain(d) if p["type"] == "subscribe"] == []
        await logout(a, d)
    run(main())


def test_initial_presence_probes_contacts(tree, xmpp_pid):
    async def main():
        e = await online(tree, "erin")
        f = await online(tree, "frank")
        await subscribe_mutually(e, f, "erin", "frank")
        await logout(e)
        await f.presence("unavailable", jid("erin"))
        # erin comes back: frank gets her presence, she gets frank's (probe).
        e = await online(tree, "erin", "two")
        p = await f.presence("available", jid("erin"))
        assert str(p["from"]) == f"{jid('erin')}/two"
        p = await e.presence("available", jid("frank"))
        assert str(p["from"]) == f"{jid('frank')}/r"
        # Subsequent presence goes to the same contacts.
        e.send_presence(pshow="away", pstatus="lunch")
        p = await f.presence(None, jid("erin"))
        assert p["show"] == "away" and p["status"] == "lunch"
        await logout(e, f)
    run(main())


def test_pre_approval(tree, xmpp_pid):
    async def main():
        g = await online(tree, "grace")
        h = await online(tree, "heidi")
        # heidi approves before grace asks: kept, not routed (§3.4).
        h.send_presence(pto=jid("grace"), ptype="subscribed")
        assert await h.push_for(jid("grace")) == ("none", None, "true")
        await g.no_presence(1.0)
        g.send_presence(pto=jid("heidi"), ptype="subscribe")
        assert await g.push_for(jid("heidi")) == ("none", "subscribe", None)
        # The server answers for heidi: she never sees the request.
        assert await g.push_for(jid("heidi")) == ("to", None, None)
        assert await h.push_for(jid("grace")) == ("from", None, None)
        p = await g.presence("available", jid("heidi"))
        assert p["from"].bare == jid("heidi")
        assert [p for p in await drain(h) if p["type"] == "subscribe"] == []
        await logout(g, h)
    run(main())


def test_unsubscribe_updates_both_rosters(tree, xmpp_pid):
    async def main():
        i = await online(tree, "ivan")
        j = await online(tree, "judy")
        await subscribe_mutually(i, j, "ivan", "judy")
        # ivan stops getting judy's presence: 'both' becomes 'from' / 'to'.
        i.send_presence(pto=jid("judy"), ptype="unsubscribe")
        assert await i.push_for(jid("judy")) == ("from", None, None)
        assert await j.push_for(jid("ivan")) == ("to", None, None)
        await j.presence("unsubscribe", jid("ivan"))
        # §3.2.3 / §3.3.3: judy's presence no longer reaches ivan.
        await i.presence("unavailable", jid("judy"))
        # ivan revokes judy's subscription to him: 'none' on both sides.
        i.send_presence(pto=jid("judy"), ptype="unsubscribed")
        assert await i.push_for(jid("judy")) == ("none", None, None)
        assert await j.push_for(jid("ivan")) == ("none", None, None)
        assert await i.roster_state(jid("judy")) == ("none", None, None)
        assert await j.roster_state(jid("ivan")) == ("none", None, None)
        await logout(i, j)
    run(main())


def test_probe_answered_only_for_subscribers(tree, xmpp_pid):
    async def main():
        a = await online(tree, "oscar")
        b = await online(tree, "peggy", "probe")
        m = await online(tree, "mallory")
        await subscribe_mutually(a, b, "oscar", "peggy")
        await drain(a)
        # A subscriber's probe is answered with the current presence...
        a.send_presence(pto=jid("peggy"), ptype="probe")
        p = await a.presence("available", jid("peggy"))
        assert str(p["from"]) == f"{jid('peggy')}/probe"
        # ...a stranger's with nothing (§4.3.2).
        m.send_presence(pto=jid("peggy"), ptype="probe")
        await m.no_presence(1.5)
        await logout(a, b, m)
    run(main())
