"""Black-box tests of switchboard-xmpp's IM layer: the roster (RFC 6121 §2,
with versioning), presence priorities as the broker's bare-JID routing
sees them (RFC 6121 §4.7.2.3, §8.5.2.1.1), and offline messages (RFC 6121
§8.5.2.2.1, XEP-0160, XEP-0203).

A whole tree runs per module (the real supervisor, broker, store and
switchboard-xmpp); slixmpp for the well-behaved client, raw streams (from
test_xmpp_core) where the exact XML or a malformed request matters.
"""
import asyncio
import re
import time

import pytest

from sbtree import wait_for, xmpp_tree
from test_xmpp_core import Client as CoreClient
from test_xmpp_core import DOMAIN, TIMEOUT, Raw, logout, port, run

NS_ROSTER = "jabber:iq:roster"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    t = xmpp_tree(tmp_path_factory.mktemp("xmpp-im"), USERS, DOMAIN)
    yield t
    t.stop()



class Client(CoreClient):
    """test_xmpp_core's client, also recording roster iqs (results and pushes)."""

    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.register_plugin("xep_0203")
        self.roster_iqs = asyncio.Queue()
        self.add_event_handler("roster_update", self.roster_iqs.put_nowait)

    async def message(self, timeout=TIMEOUT):
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def roster_push(self):
        while True:
            iq = await asyncio.wait_for(self.roster_iqs.get(), TIMEOUT)
            if iq["type"] == "set":
                return iq

    async def no_message(self, seconds=1.5):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(self.messages.get(), seconds)


def roster_items(iq):
    return {str(j): (i["name"], i["subscription"], sorted(i["groups"]))
            for j, i in iq["roster"]["items"].items()}


# --- roster -----------------------------------------------------------------------------------

def test_stream_features_advertise_roster_versioning(tree, xmpp_pid):
    async def main():
        a = await Client(f"alice@{DOMAIN}/f", "alice-pw").login(port(tree))
        assert "rosterver" in a.features
        info = await a["xep_0030"].get_info(jid=DOMAIN, timeout=TIMEOUT)
        assert "msgoffline" in info["disco_info"]["features"]
        await logout(a)
    run(main())


def test_roster_set_push_get_versions_and_remove(tree, xmpp_pid):
    async def main():
        a1 = await Client(f"alice@{DOMAIN}/r1", "alice-pw").login(port(tree))
        a2 = await Client(f"alice@{DOMAIN}/r2", "alice-pw").login(port(tree))
        # a3 never asks for the roster: it is no interested resource.
        a3 = await Client(f"alice@{DOMAIN}/r3", "alice-pw").login(port(tree))
        empty = await a1.get_roster(timeout=TIMEOUT)
        assert roster_items(empty) == {}
        v0 = empty["roster"]["ver"]
        assert v0 != ""
        await a2.get_roster(timeout=TIMEOUT)

        # Add: both interested sessions get the push, with a new version.
        await a1.update_roster(f"bob@{DOMAIN}", name="Bob", groups=["Friends", "Work"],
                               timeout=TIMEOUT)
        for c in (a1, a2):
            push = await c.roster_push()
            assert roster_items(push) == {f"bob@{DOMAIN}": ("Bob", "none", ["Friends", "Work"])}
            v1 = push["roster"]["ver"]
            assert v1 not in ("", v0)
        assert a3.roster_iqs.empty()

        # Full roster without a version, and the current version: an empty result.
        iq = a1.make_iq_get(queryxmlns=NS_ROSTER)
        full = await iq.send(timeout=TIMEOUT)
        assert roster_items(full) == {f"bob@{DOMAIN}": ("Bob", "none", ["Friends", "Work"])}
        iq = a1.make_iq_get()
        iq["roster"]["ver"] = v1
        current = await iq.send(timeout=TIMEOUT)
        assert current.xml.find(f"{{{NS_ROSTER}}}query") is None

        # Update, then a delta from v1 comes as a push after an empty result.
        await a1.update_roster(f"bob@{DOMAIN}", name="Robert", groups=[], timeout=TIMEOUT)
        push = await a2.roster_push()
        assert roster_items(push) == {f"bob@{DOMAIN}": ("Robert", "none", [])}
        v2 = push["roster"]["ver"]
        await a1.roster_push()
        iq = a1.make_iq_get()
        iq["roster"]["ver"] = v1
        delta = await iq.send(timeout=TIMEOUT)
        assert delta.xml.find(f"{{{NS_ROSTER}}}query") is None
        push = await a1.roster_push()
        assert roster_items(push) == {f"bob@{DOMAIN}": ("Robert", "none", [])}
        assert push["roster"]["ver"] == v2

        # Remove: a push with subscription 'remove', and gone from the roster.
        await a2.update_roster(f"bob@{DOMAIN}", subscription="remove", timeout=TIMEOUT)
        for c in (a1, a2):
            push = await c.roster_push()
            assert roster_items(push) == {f"bob@{DOMAIN}": ("", "remove", [])}
        full = await a1.make_iq_get(queryxmlns=NS_ROSTER).send(timeout=TIMEOUT)
        assert roster_items(full) == {}
        await logout(a1, a2, a3)
    run(main())


def test_roster_set_cannot_change_subscription(tree, xmpp_pid):
    r = Raw(port(tree)).login("carol", "carol-pw", "sub")
    r.send(f"<iq type='set' id='s1'><query xmlns='{NS_ROSTER}'>"
           f"<item jid='dave@{DOMAIN}' subscription='both' ask='subscribe'/></query></iq>")
    r.read_until(r"<iq[^>]*id='s1'[^>]*/>")
    r.send(f"<iq type='get' id='g1'><query xmlns='{NS_ROSTER}'/></iq>")
    got = r.read_until(r"<iq[^>]*id='g1'.*?</iq>").group(0)
    assert f"<item jid='dave@{DOMAIN}' subscription='none'/>" in got, got
    r.send(f"<iq type='set' id='s2'><query xmlns='{NS_ROSTER}'>"
           f"<item jid='dave@{DOMAIN}' subscription='remove'/></query></iq>")
    r.read_until(r"<iq[^>]*id='s2'[^>]*type='result'|<iq[^>]*type='result'[^>]*id='s2'")
    r.close()


ROSTER_ERRORS = {
    "two_items": (f"<item jid='bob@{DOMAIN}'/><item jid='carol@{DOMAIN}'/>", "bad-request"),
    "no_item": ("", "bad-request"),
    "duplicate_group": (f"<item jid='bob@{DOMAIN}'><group>A</group><group>A</group></item>",
                        "bad-request"),
    "empty_group": (f"<item jid='bob@{DOMAIN}'><group></group></item>", "not-acceptable"),
    "long_group": (f"<item jid='bob@{DOMAIN}'><group>{'g' * 1024}</group></item>",
                   "not-acceptable"),
    "long_name": (f"<item jid='bob@{DOMAIN}' name='{'n' * 1024}'/>", "not-acceptable"),
    "no_jid": ("<item name='x'/>", "bad-request"),
    "bad_jid": ("<item jid='a@b@c'/>", "bad-request"),
    "own_jid": (f"<item jid='erin@{DOMAIN}'/>", "not-allowed"),
    "remove_unknown": (f"<item jid='nobody@{DOMAIN}' subscription='remove'/>",
                       "item-not-found"),
}


@pytest.mark.parametrize("case", sorted(ROSTER_ERRORS))
def test_roster_set_errors(tree, xmpp_pid, case):
    payload, condition = ROSTER_ERRORS[case]
    r = Raw(port(tree)).login("erin", "erin-pw", f"err-{case}")
    r.send(f"<iq type='set' id='e1'><query xmlns='{NS_ROSTER}'>{payload}</query></iq>")
    got = r.read_until(r"<iq[^>]*id='e1'.*?</iq>").group(0)
    assert "type='error'" in got and f"<{condition} xmlns='{NS_STANZAS}'/>" in got, got
    # Nothing was stored.
    r.send(f"<iq type='get' id='g1'><query xmlns='{NS_ROSTER}'/></iq>")
    got = r.read_until(r"<iq[^>]*id='g1'.*?</iq>").group(0)
    assert "<item" not in got, got
    r.close()


def test_roster_of_another_account_is_forbidden(tree, xmpp_pid):
    r = Raw(port(tree)).login("erin", "erin-pw", "other")
    r.send(f"<iq type='get' id='o1' to='bob@{DOMAIN}'><query xmlns='{NS_ROSTER}'/></iq>")
    got = r.read_until(r"<iq[^>]*id='o1'.*?</iq>").group(0)
    assert f"<forbidden xmlns='{NS_STANZAS}'/>" in got, got
    # To the own bare JID, it is the roster.
    r.send(f"<iq type='get' id='o2' to='erin@{DOMAIN}'><query xmlns='{NS_ROSTER}'/></iq>")
    got = r.read_until(r"<iq[^>]*id='o2'.*?</iq>").group(0)
    assert "type='result'" in got and f"<query xmlns='{NS_ROSTER}'" in got, got
    r.close()


# --- presence priority --------------------------------------------------------------------------

def test_bare_jid_messages_follow_priority(tree, xmpp_pid):
    async def main():
        hi = await Client(f"frank@{DOMAIN}/hi", "frank-pw").login(port(tree))
        lo = await Client(f"frank@{DOMAIN}/lo", "frank-pw").login(port(tree))
        s = await Client(f"grace@{DOMAIN}/s", "grace-pw").login(port(tree))
        hi.send_presence(ppriority=5)
        lo.send_presence(ppriority=-1)
        await asyncio.sleep(0.5)
        s.send_message(mto=f"frank@{DOMAIN}", mbody="to the highest", mtype="chat")
        assert (await hi.message())["body"] == "to the highest"
        await lo.no_message()
        # The higher one goes unavailable: back to the default of 0, still the best.
        hi.send_presence(ptype="unavailable")
        lo.send_presence(ppriority=3)
        await asyncio.sleep(0.5)
        s.send_message(mto=f"frank@{DOMAIN}", mbody="now the other", mtype="chat")
        assert (await lo.message())["body"] == "now the other"
        await hi.no_message(0.5)
        # A full JID reaches a negative priority session all the same.
        lo.send_presence(ppriority=-5)
        await asyncio.sleep(0.5)
        s.send_message(mto=f"frank@{DOMAIN}/lo", mbody="direct", mtype="chat")
        assert (await lo.message())["body"] == "direct"
        await logout(hi, lo, s)
    run(main())


def test_negative_priority_only_means_offline(tree, xmpp_pid):
    async def main():
        neg = await Client(f"heidi@{DOMAIN}/neg", "heidi-pw").login(port(tree))
        s = await Client(f"grace@{DOMAIN}/s2", "grace-pw").login(port(tree))
        neg.send_presence(ppriority=-1)
        await asyncio.sleep(0.5)
        s.send_message(mto=f"heidi@{DOMAIN}", mbody="kept for later", mtype="chat")
        await neg.no_message()
        await logout(neg)
        # Stored offline: the next session with a non-negative priority gets it.
        again = await Client(f"heidi@{DOMAIN}/pos", "heidi-pw").login(port(tree))
        again.send_presence(ppriority=0)
        m = await again.message()
        assert m["body"] == "kept for later" and m["delay"]["stamp"] is not None
        await logout(again, s)
    run(main())


def test_bad_priority_is_refused(tree, xmpp_pid):
    r = Raw(port(tree)).login("grace", "grace-pw", "prio")
    r.send("<presence id='p1'><priority>300</priority></presence>")
    got = r.read_until(r"<presence[^>]*id='p1'.*?</presence>").group(0)
    assert "type='error'" in got and f"<bad-request xmlns='{NS_STANZAS}'/>" in got, got
    r.close()


# --- offline messages ---------------------------------------------------------------------------

def test_offline_message_delivered_once_with_delay(tree, xmpp_pid):
    async def main():
        a = await Client(f"alice@{DOMAIN}/o", "alice-pw").login(port(tree))
        a.send_message(mto=f"dave@{DOMAIN}", mbody="while you were out", mtype="chat")
        a.send_message(mto=f"dave@{DOMAIN}", mbody="second <&>", mtype="normal")
        # Not stored: headline (dropped) and groupchat (bounced).
        a.send_message(mto=f"dave@{DOMAIN}", mbody="headline", mtype="headline")
        a.send_message(mto=f"dave@{DOMAIN}", mbody="groupchat", mtype="groupchat")
        m = await a.message()
        assert m["type"] == "error" and m["error"]["condition"] == "service-unavailable"
        # No such account: bounced.
        a.send_message(mto=f"nobody@{DOMAIN}", mbody="hello?", mtype="chat")
        m = await a.message()
        assert m["type"] == "error" and m["error"]["condition"] == "service-unavailable"
        assert str(m["from"]) == f"nobody@{DOMAIN}"
        await asyncio.sleep(0.5)

        d = await Client(f"dave@{DOMAIN}/o1", "dave-pw").login(port(tree))
        await d.no_message(1.0)  # nothing before the initial presence
        d.send_presence()
        got = [await d.message(), await d.message()]
        assert [m["body"] for m in got] == ["while you were out", "second <&>"]
        for m in got:
            assert str(m["from"]) == f"alice@{DOMAIN}/o"
            assert m["delay"]["from"] == DOMAIN and m["delay"]["stamp"] is not None
        assert got[0]["type"] == "chat"
        await d.no_message(1.0)
        await logout(d)

        # Delivered, so deleted: a second login gets nothing.
        d2 = await Client(f"dave@{DOMAIN}/o2", "dave-pw").login(port(tree))
        d2.send_presence()
        await d2.no_message(2.0)
        await logout(a, d2)
    run(main())


def test_offline_messages_survive_a_worker_restart(tree):
    async def main():
        a = await Client(f"alice@{DOMAIN}/w", "alice-pw").login(port(tree))
        a.send_message(mto=f"carol@{DOMAIN}", mbody="across the restart", mtype="chat")
        await a.no_message(1.0)  # stored, not bounced
        await logout(a)
        old = tree.pid("xmpp")
        r = tree.ctl("restart", "xmpp")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: tree.status()["xmpp"]["state"] == "running"
                 and tree.pid("xmpp") != old, what="xmpp restarted")
        c = await Client(f"carol@{DOMAIN}/w", "carol-pw").login(port(tree))
        c.send_presence()
        m = await c.message()
        assert m["body"] == "across the restart" and m["delay"]["stamp"] is not None
        await logout(c)
    run(main())


def test_offline_raw_xml_has_delay(tree, xmpp_pid):
    s = Raw(port(tree)).login("bob", "bob-pw", "raw")
    s.send(f"<message to='erin@{DOMAIN}' type='chat' id='m1'><body>raw</body></message>")
    time.sleep(0.5)
    r = Raw(port(tree)).login("erin", "erin-pw", "raw")
    r.send("<presence/>")
    m = r.read_until(r"<message[^>]*>.*?</message>").group(0)
    assert re.search(rf"<delay xmlns='urn:xmpp:delay' from='{DOMAIN}' "
                     r"stamp='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ'/>", m), m
    assert "<body>raw</body>" in m and f"from='bob@{DOMAIN}/raw'" in m
    r.close()
    s.close()
