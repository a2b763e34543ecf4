# SPDX-License-Identifier: MIT
"""psyne_bench across two hosts: --listen on one, --connect on the other.

The two sides run as two processes: in two network namespaces joined by a
veth pair when this test may make them (root, iproute2), and always over
127.0.0.1. Both must print a result for every workload and size the
connector asked for, agreeing on the figures, and every JSON result must say
which machine, psyne version and commit and which command made it.

Usage: bench_two_host_test.py PSYNE_BENCH
"""
import json
import os
import re
import socket
import subprocess
import sys

BENCH = sys.argv[1]
NS_A, NS_B = "psyne-bench-srv", "psyne-bench-cli"
ADDR_A, ADDR_B = "10.213.78.1", "10.213.78.2"


def fail(why):
    print("bench_two_host_test: FAIL: " + why)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def header_version():
    text = open(os.path.join(os.path.dirname(__file__), "..", "include", "psyne.h")).read()
    parts = [re.search(r"#define PSYNE_VERSION_%s (\d+)" % k, text).group(1) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


def two_sides(listen_prefix, connect_prefix, addr, what):
    listener = subprocess.Popen(listen_prefix + [BENCH, "--listen", addr, "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        connector = subprocess.run(connect_prefix + [BENCH, "--connect", addr, "--json", "--workload",
                                                     "tcp-tput,tcp-pingpong", "--size", "64,4096",
                                                     "--iterations", "4000", "--runs", "2"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)
        out, err = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    if connector.returncode != 0 or listener.returncode != 0:
        fail("%s: connector exit %d (%s), listener exit %d (%s)" % (what, connector.returncode, connector.stderr,
                                                                   listener.returncode, err))
    sent = [json.loads(line) for line in connector.stdout.splitlines() if line.startswith("{")]
    got = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    want = [(w, s) for w in ("tcp-tput", "tcp-pingpong") for s in (64, 4096)]
    for side, results in (("connector", sent), ("listener", got)):
        if [(r["workload"], r["size"]) for r in results] != want:
            fail("%s: the %s printed %s" % (what, side, results))
    version = header_version()
    for mine, theirs in zip(sent, got):
        key = "mps" if mine["workload"] == "tcp-tput" else "rtt_p50_ns"
        if mine[key] != theirs[key] or not mine[key] > 0:
            fail("%s: the sides disagree on %s: %s and %s" % (what, key, mine, theirs))
        roles = (mine["role"], theirs["role"])
        if roles not in (("sender", "receiver"), ("pinger", "ponger")) or mine["two_host"] != 1:
            fail("%s: roles %s" % (what, roles))
        for r, cmd in ((mine, "--connect"), (theirs, "--listen")):
            m = r.get("machine", {})
            if not m.get("cpu") or not m.get("cpus", 0) >= 1 or m.get("kernel") != os.uname().release:
                fail("%s: machine %s" % (what, m))
            if r.get("psyne", {}).get("version") != version or not r["psyne"].get("commit"):
                fail("%s: psyne %s, the header says %s" % (what, r.get("psyne"), version))
            if cmd not in r.get("command", ""):
                fail("%s: command %r" % (what, r.get("command")))
    print("bench_two_host_test: %s: %d results on each side, in agreement" % (what, len(sent)))


def sh(cmd):
    return subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def netns_remove():
    sh("ip netns del %s; ip netns del %s" % (NS_A, NS_B))


def netns_make():
    if os.geteuid() != 0:
        return "not root"
    if not sh("ip -V"):
        return "ip (iproute2) is not installed"
    netns_remove()
    steps = ["ip netns add %s" % NS_A, "ip netns add %s" % NS_B,
             "ip link add psyne-bs netns %s type veth peer name psyne-bc netns %s" % (NS_A, NS_B),
             "ip -n %s addr add %s/24 dev psyne-bs" % (NS_A, ADDR_A),
             "ip -n %s addr add %s/24 dev psyne-bc" % (NS_B, ADDR_B),
             "ip -n %s link set psyne-bs up" % NS_A, "ip -n %s link set psyne-bc up" % NS_B,
             "ip -n %s link set lo up" % NS_A, "ip -n %s link set lo up" % NS_B]
    for step in steps:
        if not sh(step):
            netns_remove()
            return "'%s' failed" % step
    return None


two_sides([], [], "127.0.0.1:%d" % free_port(), "two processes over 127.0.0.1")
why = netns_make()
if why:
    print("bench_two_host_test: two network namespaces skipped: " + why)
else:
    try:
        two_sides(["ip", "netns", "exec", NS_A], ["ip", "netns", "exec", NS_B], "%s:%d" % (ADDR_A, 47123),
                  "two network namespaces over a veth pair")
    finally:
        netns_remove()
