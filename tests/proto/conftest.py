"""Fixtures shared by the black-box tests in this folder."""
import pytest

from sbtree import pid_alive


@pytest.fixture
def xmpp_pid(tree):
    """The XMPP worker's pid, checked alive and unchanged after the test: a
    hostile or odd input must never cost the worker its life."""
    pid = tree.pid("xmpp")
    yield pid
    assert pid_alive(pid), tree.log_tail()
    assert tree.pid("xmpp") == pid, tree.log_tail()
