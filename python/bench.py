# SPDX-License-Identifier: MIT
"""psyne's Python binding against pyzmq (copy=False), same workloads, one run.

    PYTHONPATH=build/python /usr/bin/python3 python/bench.py [--rounds 5] [--quick]

Workloads, each with a producer and a consumer in two processes on one machine:
  tput-64       64-byte messages, one way, as many as fit in the time (messages/s)
  tput-1MiB     1 MiB messages, one way (GB/s); every message is written whole
                by the producer and read whole (a sum of 8-byte words over the
                numpy view) by the consumer, so neither side is free
  pingpong-64   a 64-byte request and its reply (round-trip p50, us)
psyne runs over ipc:// (shared memory, the payload written and read in place);
pyzmq over ipc:// (a unix socket) with copy=False on both ends, send and
receive of zmq.Frame buffers (pyzmq's zero-copy path; the kernel copies
through the socket), and the high-water marks raised so neither side stalls
on them. The systems alternate round by round; a ratio is the median of the
pairwise ratios (psyne / pyzmq: above 1 means psyne is faster, for the
round trip psyne's time over pyzmq's inverted as well).

Prints one RESULT line per system and workload and a RATIO line per workload.
"""
import argparse
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time

import numpy as np

# python/ holds the package's sources, without the built extension: the
# package PYTHONPATH names (build/python) must come first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
import psyne  # noqa: E402

try:
    import zmq
except ImportError:
    zmq = None

MiB = 1 << 20


def psyne_uri(name):
    return f"ipc://pybench-{name}-{os.getpid()}"


# ---- psyne ----

def psyne_tput_producer(uri, size, count, ready):
    with psyne.Channel(uri, role="producer", capacity=max(1 << 22, 16 * (size + 64)), open_timeout=20) as tx:
        ready.wait()
        block = np.full(size // 8, 7, dtype=np.uint64) if size >= MiB else None
        for i in range(count):
            c = tx.claim(size)
            if block is not None:  # a large message: every word written in place
                np.copyto(np.frombuffer(c, dtype=np.uint64), block)
            else:
                c[0:8] = struct.pack("<Q", i)
            c.commit(size)


def psyne_tput(size, count):
    uri = psyne_uri(f"tput{size}")
    ready = mp.Event()
    with psyne.Channel(uri, role="consumer", capacity=max(1 << 22, 16 * (size + 64))) as rx:
        p = mp.Process(target=psyne_tput_producer, args=(uri, size, count, ready))
        p.start()
        ready.set()
        got = 0
        start = time.perf_counter()
        while got < count:
            for msg in rx.receive_batch(64, timeout=10):
                if size >= MiB:
                    v = np.frombuffer(msg, dtype=np.uint64)
                    assert int(v.sum()) == 7 * (size // 8)
                    del v
                msg.release()
                got += 1
        elapsed = time.perf_counter() - start
        p.join()
    return elapsed


def psyne_ponger(ping, pong, count, ready):
    with psyne.Channel(ping, role="consumer", capacity=1 << 20, open_timeout=20) as rx, \
            psyne.Channel(pong, role="producer", capacity=1 << 20, open_timeout=20) as tx:
        ready.set()
        for _ in range(count):
            with rx.receive(timeout=10) as m:
                with tx.claim(64) as c:
                    c[0:8] = m.tobytes()[0:8]


def psyne_pingpong(count):
    ping, pong = psyne_uri("ping"), psyne_uri("pong")
    ready = mp.Event()
    with psyne.Channel(ping, role="producer", capacity=1 << 20) as tx, \
            psyne.Channel(pong, role="consumer", capacity=1 << 20) as rx:
        p = mp.Process(target=psyne_ponger, args=(ping, pong, count, ready))
        p.start()
        ready.wait()
        rtts = []
        for i in range(count):
            t0 = time.perf_counter_ns()
            with tx.claim(64) as c:
                c[0:8] = struct.pack("<Q", i)
            with rx.receive(timeout=10):
                pass
            rtts.append(time.perf_counter_ns() - t0)
        p.join()
    return statistics.median(rtts[count // 10:]) / 1000.0


# ---- pyzmq ----

def zmq_addr(name):
    return f"ipc:///tmp/pybench-zmq-{name}-{os.getpid()}"


def zmq_tput_producer(addr, size, count, ready):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, 100000)
    s.connect(addr)
    ready.wait()
    block = np.full(size // 8, 7, dtype=np.uint64) if size >= MiB else None
    for i in range(count):
        if block is not None:
            buf = np.empty(size // 8, dtype=np.uint64)
            np.copyto(buf, block)  # written whole, as psyne's producer writes its message
            s.send(buf, copy=False)
        else:
            s.send(struct.pack("<Q", i) + bytes(size - 8), copy=False)
    s.close(linger=-1)
    ctx.term()


def zmq_tput(size, count):
    addr = zmq_addr(f"tput{size}")
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    s.setsockopt(zmq.RCVHWM, 100000)
    s.bind(addr)
    ready = mp.Event()
    p = mp.Process(target=zmq_tput_producer, args=(addr, size, count, ready))
    p.start()
    ready.set()
    start = time.perf_counter()
    for _ in range(count):
        f = s.recv(copy=False)
        if size >= MiB:
            v = np.frombuffer(f.buffer, dtype=np.uint64)
            assert int(v.sum()) == 7 * (size // 8)
            del v
    elapsed = time.perf_counter() - start
    p.join()
    s.close(linger=0)
    ctx.term()
    return elapsed


def zmq_ponger(addr, count, ready):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    s.connect(addr)
    ready.set()
    for _ in range(count):
        f = s.recv(copy=False)
        s.send(f, copy=False)
    s.close(linger=-1)
    ctx.term()


def zmq_pingpong(count):
    addr = zmq_addr("pp")
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    s.bind(addr)
    ready = mp.Event()
    p = mp.Process(target=zmq_ponger, args=(addr, count, ready))
    p.start()
    ready.wait()
    rtts = []
    msg = bytes(64)
    for i in range(count):
        t0 = time.perf_counter_ns()
        s.send(msg, copy=False)
        s.recv(copy=False)
        rtts.append(time.perf_counter_ns() - t0)
    p.join()
    s.close(linger=0)
    ctx.term()
    return statistics.median(rtts[count // 10:]) / 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    args = ap.parse_args()
    if zmq is None:
        sys.exit("bench.py needs pyzmq: apt-get install python3-zmq")
    n64, n1m, npp = (20000, 200, 2000) if args.quick else (300000, 2000, 20000)
    mp.set_start_method("fork")
    print(f"# psyne {psyne.__version__} (Python binding) vs pyzmq {zmq.pyzmq_version()} (libzmq {zmq.zmq_version()}), "
          f"{args.rounds} alternating rounds, two processes each")
    rows = [
        ("tput-64", "msgs_per_s", lambda: n64 / psyne_tput(64, n64), lambda: n64 / zmq_tput(64, n64), True),
        ("tput-1MiB", "gbps", lambda: n1m * MiB / psyne_tput(MiB, n1m) / 1e9,
         lambda: n1m * MiB / zmq_tput(MiB, n1m) / 1e9, True),
        ("pingpong-64", "rtt_p50_us", lambda: psyne_pingpong(npp), lambda: zmq_pingpong(npp), False),
    ]
    for name, metric, run_psyne, run_zmq, higher_better in rows:
        ps, zs, ratios = [], [], []
        for r in range(args.rounds):
            a, b = (run_psyne(), run_zmq()) if r % 2 == 0 else tuple(reversed((run_zmq(), run_psyne())))
            ps.append(a)
            zs.append(b)
            ratios.append(a / b if higher_better else b / a)
        print(f"RESULT system=psyne-python workload={name} {metric}={statistics.median(ps):.4g} rounds={args.rounds}")
        print(f"RESULT system=pyzmq workload={name} {metric}={statistics.median(zs):.4g} rounds={args.rounds}")
        print(f"RATIO workload={name} psyne/pyzmq={statistics.median(ratios):.3f} "
              f"min={min(ratios):.3f} max={max(ratios):.3f}" + ("" if higher_better else " (time inverted)"))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
