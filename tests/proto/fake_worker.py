#!/usr/bin/python3
"""A stand-in worker for the supervisor's tests (tests/proto/test_supervisor.py).

Started through a small shell script installed under the names switchboard-broker,
switchboard-store, switchboard-xmpp... in a temporary libexec folder: the script
records the signal dispositions it inherited (Python changes some of its own at
start-up) in <libexec>/<kind>.<pid>.sig, then execs this file with its own path
as the first argument. It behaves as its mode file
<libexec>/<kind>.mode says (read at every start, default "ready"), and records
what it inherited in <libexec>/<kind>.<pid>.json so that the tests can check the
supervisor's side of the contract in shared/proc.h.

Modes:
  ready        say READY, report CONNS from <kind>.conns if present, exit on EOF of fd 3
  noready      never say READY; exit on EOF of fd 3
  fail         exit 1 at once (a death before READY)
  exit78       exit 78 at once (configuration error)
  ignoreterm   like ready, but ignore SIGTERM (the supervisor must SIGKILL it)
  crash        say READY, then die of SIGSEGV after 0.2 s
"""
import json
import os
import signal
import stat
import sys
import time

argv = sys.argv[1:]  # as the supervisor started the wrapper
kind = os.path.basename(argv[0]).removeprefix("switchboard-")
folder = os.path.dirname(os.path.abspath(argv[0]))


def read(name, default=None):
    try:
        with open(os.path.join(folder, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


def fd_kind(fd):
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return None
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "pipe"
    return "other"


mode = read(f"{kind}.mode", "ready")
fds = {}
for name in os.listdir("/proc/self/fd"):
    fd = int(name)
    k = fd_kind(fd)
    if k is not None:  # the listing's own fd is gone by now
        fds[fd] = {"kind": k, "flags": None}
for fd in (3, 4):
    if fd in fds:
        import fcntl
        fds[fd]["flags"] = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
with open(os.path.join(folder, f"{kind}.{os.getpid()}.sig")) as f:
    sig = {line.split(":")[0]: line.split(":")[1].strip() for line in f if line.startswith("Sig")}
record = {
    "argv": argv,
    "fds": {str(k): v for k, v in fds.items()},
    "env": {k: v for k, v in os.environ.items() if k.startswith("SWITCHBOARD_")},
    "sigblk": sig.get("SigBlk"),
    "sigign": sig.get("SigIgn"),
    "mode": mode,
    "time": time.time(),
}
with open(os.path.join(folder, f"{kind}.{os.getpid()}.json"), "w") as f:
    json.dump(record, f)

if mode == "fail":
    sys.exit(1)
if mode == "exit78":
    sys.exit(78)
if mode == "ignoreterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode != "noready":
    os.write(4, b"READY\n")
    conns = read(f"{kind}.conns")
    if conns is not None:
        os.write(4, f"CONNS {conns}\n".encode())
if mode == "crash":
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGSEGV)
# The supervisor never writes to the life pipe: EOF means it is gone.
while os.read(3, 1):
    pass
sys.exit(0)
