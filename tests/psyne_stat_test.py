# SPDX-License-Identifier: MIT
"""psyne-stat against real channels.

Each test starts stat_peer processes (real handles: ipc:// segments shared by
two processes, a dynamic ring, memory:// and tcp:// handles that publish
their counters), drives them over stdin, and checks what psyne-stat prints
(--json) against each handle's own psyne_channel_stats, which stat_peer
prints. Usage: psyne_stat_test.py PSYNE_STAT STAT_PEER
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

TOOL = None
PEER = None
SHM = "/dev/shm"

# psyne_stats fields stat_peer prints; psyne-stat must give the same values
FIELDS = ("capacity in_use high_water msgs_out bytes_out msgs_in bytes_in full_events empty_events waits "
          "wakeups peers_lost claims_recovered views_recovered tcp_reconnects tcp_protocol_errors "
          "tcp_send_calls tcp_recv_calls resizes_up resizes_down failed_claims window_high_water tcp_peers mode "
          "subscribers producers consumers tcp_connected segments").split()

# counted by a tcp:// handle's own threads even when no message moves
MOVING = ("waits", "wakeups", "tcp_send_calls", "tcp_recv_calls", "empty_events")

counter = 0


def unique(prefix="pst"):
    global counter
    counter += 1
    return "%s%d-%d" % (prefix, os.getpid(), counter)


class Peer:
    """A stat_peer process: one channel handle."""

    def __init__(self, role, uri, *args, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen([PEER, role, uri] + [str(a) for a in args], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=full_env)
        line = self.p.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError("stat_peer %s %s did not start: %r" % (role, uri, line))
        self.pid = int(line.split()[1])

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        answer = self.p.stdout.readline()
        if not answer:
            raise RuntimeError("stat_peer %d ended on %r" % (self.pid, line))
        return answer.strip()

    def stats(self):
        return json.loads(self.cmd("stats"))

    def close(self):
        if self.p.poll() is None:
            answer = self.cmd("close")
            self.p.wait(timeout=60)
            return answer
        return None

    def kill(self):
        self.p.kill()
        self.p.wait(timeout=60)

    def end(self):
        """Closes the handle if the peer still listens, else kills it."""
        if self.p.poll() is None:
            try:
                self.p.stdin.write("stop\nclose\n")
                self.p.stdin.flush()
                self.p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.p.kill()
        self.p.wait(timeout=60)
        for f in (self.p.stdin, self.p.stdout):
            f.close()


def tool(*args, rc=0):
    r = subprocess.run([TOOL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if r.returncode != rc:
        raise AssertionError("psyne-stat %s: exit %d, expected %d\n%s%s" % (args, r.returncode, rc, r.stdout,
                                                                           r.stderr))
    return r.stdout


def tool_json(*args):
    return json.loads(tool("--json", *args))


def channel(name):
    """psyne-stat --json ipc://name: the channel's object."""
    out = tool_json("ipc://" + name)
    found = [c for c in out["channels"] if c["name"] == name]
    assert len(found) == 1, out
    return found[0]


def published(pid, uri, doc=None):
    """The entries process pid publishes for uri (psyne-stat --json)."""
    doc = doc or tool_json()
    for proc in doc["processes"]:
        if proc["pid"] == pid:
            return proc, [h for h in proc["handles"] if h["uri"] == uri]
    return None, []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PsyneStat(unittest.TestCase):
    def setUp(self):
        self.peers = []

    def tearDown(self):
        for p in self.peers:
            p.end()

    def peer(self, *args, **kw):
        p = Peer(*args, **kw)
        self.peers.append(p)
        return p

    def assertSameStats(self, shown, own, what):
        diff = {f: (shown.get(f), own[f]) for f in FIELDS if shown.get(f) != own[f]}
        self.assertEqual(diff, {}, "%s: psyne-stat differs from psyne_channel_stats (shown, own)" % what)

    def wait_published(self, peer, uri, deadline_s=30):
        """Polls until the published entry equals the handle's own stats.

        A tcp:// handle's threads keep counting while nothing is sent (their
        timed waits, ACKs): those counters (MOVING) must only be no further
        than the handle's own count taken after the sample was read."""
        end = time.monotonic() + deadline_s
        while True:
            proc, entries = published(peer.pid, uri)
            own = peer.stats()
            shown = entries[0]["stats"] if entries else {}
            if entries and all(shown.get(f) == own[f] for f in FIELDS if f not in MOVING) and \
                    all(shown.get(f) <= own[f] for f in MOVING):
                return proc, entries[0], own
            if time.monotonic() > end:
                self.fail("published %s of pid %d never matched its stats: %s vs %s" %
                          (uri, peer.pid, entries, own))
            time.sleep(0.05)

    # ---- ipc:// ----

    def test_ipc_two_processes(self):
        name = unique()
        cons = self.peer("consumer", "ipc://" + name, 65536)
        prod = self.peer("producer", "ipc://" + name)
        self.assertEqual(prod.cmd("send 300 64"), "ok")
        self.assertEqual(cons.cmd("recv 200"), "ok")
        before_p, before_c = prod.stats(), cons.stats()
        shown = channel(name)
        self.assertEqual(shown["state"], "live")
        self.assertSameStats(shown["stats"], before_c, "consumer's view")
        self.assertSameStats(shown["stats"], before_p, "producer's view")
        self.assertEqual(shown["stats"]["msgs_out"], 300)
        self.assertEqual(shown["stats"]["msgs_in"], 200)
        handles = {h["pid"]: h for h in shown["handles"]}
        self.assertEqual(set(handles), {prod.pid, cons.pid})
        self.assertEqual(handles[prod.pid]["role"], "producer")
        self.assertEqual(handles[cons.pid]["role"], "consumer")
        self.assertTrue(all(h["alive"] for h in handles.values()))
        self.assertEqual(handles[cons.pid]["lag_msgs"], 100)
        self.assertEqual(handles[cons.pid]["lag_bytes"], shown["stats"]["in_use"])
        # observing changed nothing: the same counts, in both processes
        tool()
        tool("ipc://" + name)
        for own, before in ((prod.stats(), before_p), (cons.stats(), before_c)):
            self.assertSameStats(own, before, "after psyne-stat looked")
            self.assertEqual((own["producers"], own["consumers"]), (1, 1))
        listing = tool()
        self.assertIn(name, listing)
        # a readiness descriptor, armed: its owner waits in an event loop
        self.assertEqual(cons.cmd("fd"), "ok")
        shown = channel(name)
        self.assertEqual(shown["descriptors"], [{"side": "recv", "armed": True, "pid": cons.pid}])
        self.assertIn("armed (its owner waits)", tool(name))
        prod.cmd("send 1 8")  # wakes the descriptor: disarmed
        self.assertEqual(channel(name)["descriptors"][0]["armed"], False)
        self.assertEqual(cons.cmd("recv 1"), "ok")
        drained = channel(name)
        self.assertSameStats(drained["stats"], cons.stats(), "after draining")
        self.assertEqual([h["lag_msgs"] for h in drained["handles"] if h["pid"] == cons.pid], [0])

    def test_ipc_mpsc_handles(self):
        name = unique()
        cons = self.peer("consumer", "ipc://" + name, 65536, "mpsc")
        a = self.peer("producer", "ipc://" + name, 65536, "mpsc")
        b = self.peer("producer", "ipc://" + name, 65536, "mpsc")
        a.cmd("send 100 32")
        b.cmd("send 50 100")
        cons.cmd("recv 120")
        shown = channel(name)
        self.assertSameStats(shown["stats"], cons.stats(), "MPSC")
        by_pid = {h["pid"]: h for h in shown["handles"]}
        self.assertEqual((by_pid[a.pid]["msgs_out"], by_pid[a.pid]["bytes_out"]), (100, 3200))
        self.assertEqual((by_pid[b.pid]["msgs_out"], by_pid[b.pid]["bytes_out"]), (50, 5000))
        self.assertEqual(by_pid[cons.pid]["lag_msgs"], 30)
        self.assertEqual(shown["mode_name"], "mpsc")

    def test_ipc_broadcast_subscribers(self):
        name = unique()
        prod = self.peer("producer", "ipc://" + name, 65536, "broadcast")
        fast = self.peer("consumer", "ipc://" + name, 65536, "broadcast")
        slow = self.peer("consumer", "ipc://" + name, 65536, "broadcast")
        prod.cmd("send 40 16")
        fast.cmd("recv 40")
        slow.cmd("recv 15")
        shown = channel(name)
        self.assertSameStats(shown["stats"], prod.stats(), "BROADCAST")
        by_pid = {h["pid"]: h for h in shown["handles"]}
        self.assertEqual(by_pid[fast.pid]["lag_msgs"], 0)
        self.assertEqual(by_pid[slow.pid]["lag_msgs"], 25)
        self.assertGreaterEqual(by_pid[slow.pid]["subscriber"], 0)
        self.assertEqual(shown["stats"]["subscribers"], 2)

    def test_ipc_dynamic_ring(self):
        name = unique()
        cons = self.peer("consumer", "ipc://" + name, 4096, "dynamic")
        prod = self.peer("producer", "ipc://" + name, 4096, "dynamic")
        prod.cmd("send 3000 64")
        cons.cmd("recv 2500")
        shown = channel(name)
        self.assertTrue(shown["dynamic"])
        # A consumer counts only the segments it has reached; the producer,
        # and psyne-stat, every live one.
        own = prod.stats()
        self.assertGreaterEqual(own["resizes_up"], 1, "the test meant to make the ring grow")
        self.assertSameStats(shown["stats"], own, "dynamic ring, producer's view")
        self.assertEqual(len(shown["segments"]), own["segments"])
        self.assertEqual(sum(s["in_use"] for s in shown["segments"]), own["in_use"])
        cons.cmd("recv 500")
        shown = channel(name)
        self.assertSameStats(shown["stats"], cons.stats(), "dynamic ring drained, consumer's view")
        self.assertSameStats(shown["stats"], prod.stats(), "dynamic ring drained, producer's view")
        self.assertTrue(all(h["alive"] for h in shown["handles"]))

    def test_killed_process_dead_and_cleaned(self):
        live, doomed = unique(), unique()
        lc = self.peer("consumer", "ipc://" + live, 65536)
        lp = self.peer("producer", "ipc://" + live)
        dp = self.peer("producer", "ipc://" + doomed, 65536)
        dp.cmd("send 10 64")
        lp.cmd("send 5 64")
        dp.kill()
        shown = channel(doomed)
        self.assertEqual(shown["state"], "dead")
        self.assertTrue(shown["dead"])
        self.assertEqual([h["alive"] for h in shown["handles"]], [False])
        self.assertEqual(channel(live)["state"], "live")
        self.assertIn("dead", tool())
        removed = tool_json("--clean")["removed"]
        self.assertIn(SHM + "/psyne." + doomed, removed)
        self.assertNotIn(SHM + "/psyne." + live, removed)
        self.assertFalse(os.path.exists(SHM + "/psyne." + doomed))
        self.assertTrue(os.path.exists(SHM + "/psyne." + live))
        tool("ipc://" + doomed, rc=1)
        # the live channel works on, its counts untouched
        self.assertEqual(lc.cmd("recv 5"), "ok")
        self.assertSameStats(channel(live)["stats"], lc.stats(), "survivor")
        self.assertEqual((lp.stats()["producers"], lp.stats()["consumers"]), (1, 1))

    # ---- published handles: memory://, tcp:// ----

    def test_published_memory(self):
        uri = "memory://" + unique()
        env = {"PSYNE_PUBLISH_INTERVAL_MS": "20"}
        p = self.peer("any", uri, 65536, "publish", env=env)
        p.cmd("send 100 64")
        p.cmd("recv 60")
        proc, entry, own = self.wait_published(p, uri)
        self.assertTrue(proc["alive"])
        self.assertEqual(entry["role"], "any")
        self.assertEqual(entry["stats"]["msgs_out"], 100)
        self.assertEqual(proc["interval_ms"], 20)
        self.assertIn(uri, tool())
        detail = tool(uri)
        self.assertIn("out 100 messages", detail)
        # sampled while the handle claims and commits (sanitizer builds watch the two threads)
        p.cmd("pump 64")
        time.sleep(0.3)
        p.cmd("stop")
        self.wait_published(p, uri)
        counters = "%s/psyne-stats.%d" % (SHM, p.pid)
        self.assertTrue(os.path.exists(counters))
        p.close()
        self.assertFalse(os.path.exists(counters), "a process that exits removes its counters segment")

    def test_published_tcp_link_and_peers(self):
        uri = "tcp://127.0.0.1:%d" % free_port()
        env = {"PSYNE_PUBLISH_INTERVAL_MS": "20"}
        server = self.peer("any", uri, 65536, "listen", "publish", env=env)
        # the client publishes because of its environment, not its options
        client = self.peer("any", uri, 65536, env=dict(env, PSYNE_PUBLISH="1"))
        client.cmd("send 100 64")
        server.cmd("recv 100")
        server.cmd("send 10 32")
        client.cmd("recv 10")
        _, s_entry, s_own = self.wait_published(server, uri)
        _, c_entry, c_own = self.wait_published(client, uri)
        self.assertEqual((s_own["msgs_in"], s_own["msgs_out"]), (100, 10))
        self.assertEqual((c_own["msgs_in"], c_own["msgs_out"]), (10, 100))
        for entry in (s_entry, c_entry):
            self.assertEqual(len(entry["peers"]), 1)
            self.assertTrue(entry["peers"][0]["connected"])
            self.assertTrue(entry["peers"][0]["addr"].startswith("127.0.0.1:"), entry["peers"][0])
        self.assertEqual(c_entry["peers"][0]["addr"], uri[len("tcp://"):])
        self.assertEqual((s_entry["peers"][0]["msgs_in"], s_entry["peers"][0]["msgs_out"]), (100, 10))

    def test_published_tcp_server_with_peers(self):
        uri = "tcp://127.0.0.1:%d" % free_port()
        env = {"PSYNE_PUBLISH_INTERVAL_MS": "20"}
        server = self.peer("consumer", uri, 65536, "listen", "peers=4", "publish", env=env)
        a = self.peer("producer", uri, 65536)
        b = self.peer("producer", uri, 65536)
        a.cmd("send 7 16")
        b.cmd("send 5 16")
        server.cmd("recv 12")
        _, entry, own = self.wait_published(server, uri)
        self.assertEqual((own["msgs_in"], own["tcp_peers"]), (12, 2))
        self.assertEqual(sorted(p["msgs_in"] for p in entry["peers"]), [5, 7])
        self.assertTrue(all(p["connected"] and p["addr"].startswith("127.0.0.1:") for p in entry["peers"]))
        self.assertEqual(len({p["peer"] for p in entry["peers"]}), 2)

    def test_killed_publisher(self):
        uri = "memory://" + unique()
        p = self.peer("any", uri, 4096, "publish", env={"PSYNE_PUBLISH_INTERVAL_MS": "20"})
        p.cmd("send 3 8")
        self.wait_published(p, uri)
        p.kill()
        proc, entries = published(p.pid, uri)
        self.assertIsNotNone(proc)
        self.assertFalse(proc["alive"])
        self.assertIn("process gone", tool())
        removed = tool_json("--clean")["removed"]
        self.assertIn("%s/psyne-stats.%d" % (SHM, p.pid), removed)
        self.assertIsNone(published(p.pid, uri)[0])

    # ---- --watch and the command line ----

    def test_watch_rates(self):
        name = unique()
        cons = self.peer("consumer", "ipc://" + name, 65536)
        prod = self.peer("producer", "ipc://" + name)
        cons.cmd("pump 0")
        prod.cmd("pump 64")
        try:
            w = subprocess.Popen([TOOL, "--watch", "0.2", "--json", "ipc://" + name], stdout=subprocess.PIPE,
                                 text=True)
            time.sleep(1.5)
            w.send_signal(signal.SIGINT)
            out, _ = w.communicate(timeout=30)
            self.assertEqual(w.returncode, 0)
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            self.assertGreaterEqual(len(lines), 3)
            rates = [c["msgs_per_s"] for doc in lines[1:] for c in doc["channels"] if c["name"] == name]
            self.assertTrue(rates and max(rates) > 0, rates)
            idle = [c["idle_s"] for doc in lines[1:] for c in doc["channels"] if c["name"] == name]
            self.assertLess(min(idle), 1.0, "messages flow: never idle for long")
            w = subprocess.Popen([TOOL, "--watch", "0.2"], stdout=subprocess.PIPE, text=True)
            time.sleep(0.7)
            w.send_signal(signal.SIGINT)
            out, _ = w.communicate(timeout=30)
            self.assertIn("MSG/S", out)
            self.assertIn(name, out)
        finally:
            prod.cmd("stop")
            cons.cmd("stop")

    def test_command_line(self):
        self.assertIn("usage: psyne-stat", tool("--help"))
        tool("--bogus", rc=2)
        tool("--force", rc=2)
        tool("no-such-channel-" + unique(), rc=1)
        tool("memory://no-such-" + unique(), rc=1)


if __name__ == "__main__":
    TOOL, PEER = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"])
