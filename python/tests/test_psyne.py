# SPDX-License-Identifier: MIT
"""The psyne Python binding against real channels, real processes and a real
socket: zero copy, C and Python ends over ipc:// and tcp://, typed arrays,
released-buffer safety, the GIL, Ctrl-C, the readiness descriptor.

Run by the README's test command (ctest: python_tests) with PYTHONPATH at the
built package and PSYNE_PY_PEER at the C helper (tests/py_peer.c)."""
import asyncio
import gc
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import psyne

PEER = os.environ.get("PSYNE_PY_PEER")
# The C helper carries its own sanitizer runtime, if any: not the one
# preloaded into this interpreter for the extension (an ASan build).
PEER_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
HERE = os.path.dirname(os.path.abspath(__file__))
_names = iter(range(1 << 30))


def ipc_uri():
    return f"ipc://pytest-{os.getpid()}-{next(_names)}"


def mem_uri():
    return f"memory://pytest-{next(_names)}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_raw_bytes_in_place():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx, \
            psyne.Channel(uri, role="producer") as tx:
        with tx.claim(64) as buf:
            buf[0:5] = b"hello"
            assert len(buf) == 64
            buf.commit(5, psyne.TYPE_USER_MIN + 1)
            wrote_at = buf.address
        msg = rx.receive(timeout=1.0)
        assert msg is not None and msg.type == psyne.TYPE_USER_MIN + 1 and len(msg) == 5
        assert bytes(memoryview(msg)) == b"hello"
        assert msg.address == wrote_at  # read where it was written: no copy
        msg.release()
        assert rx.receive(timeout=0) is None  # empty is a result, not an exception


def test_claim_aborts_on_exception_and_commits_at_block_end():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx, psyne.Channel(uri, role="producer") as tx:
        with pytest.raises(RuntimeError):
            with tx.claim(32) as buf:
                buf[0:3] = b"abc"
                raise RuntimeError("the message is not sent")
        with tx.claim(3) as buf:
            buf[:] = b"xyz"  # no commit: the block's end commits the whole claim
        msg = rx.receive(timeout=1.0)
        assert msg.tobytes() == b"xyz"
        msg.release()
        assert rx.receive(timeout=0) is None


def test_commit_refused_while_a_view_lives():
    uri = mem_uri()
    with psyne.Channel(uri, capacity=1 << 16) as ch:
        claim = ch.claim(16)
        view = memoryview(claim)
        with pytest.raises(BufferError):
            claim.commit()
        view.release()
        claim.commit(16)
        with pytest.raises(BufferError):
            memoryview(claim)  # committed: its bytes are the consumers'


def test_zero_copy_typed_arrays_round_trip():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 20) as rx, psyne.Channel(uri, role="producer") as tx:
        v = tx.claim_array(np.float32, (1000,))
        assert v.__array_interface__["data"][0] % 64 == 0  # 64-byte aligned, as C's typed messages
        v[:] = np.arange(1000, dtype=np.float32)
        v_at = v.__array_interface__["data"][0]
        v.send()
        assert not v.flags.writeable  # sent: the bytes are the consumers'
        m = tx.claim_array("float64", (3, 4))
        m[:] = np.arange(12).reshape(3, 4)
        m.send()
        msg = rx.receive(timeout=1.0)
        a = msg.array()
        assert a.dtype == np.float32 and a.shape == (1000,) and not a.flags.writeable
        assert a.__array_interface__["data"][0] == v_at  # the very bytes the producer wrote
        assert np.array_equal(a, np.arange(1000, dtype=np.float32))
        del a
        msg.release()
        with rx.receive(timeout=1.0) as msg:
            b = msg.array()
            assert b.dtype == np.float64 and b.shape == (3, 4) and b[2, 3] == 11.0
            del b


def test_view_keeps_the_message_held():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx, psyne.Channel(uri, role="producer") as tx:
        with tx.claim(1000) as buf:
            buf[0:4] = b"keep"
        msg = rx.receive(timeout=1.0)
        view = memoryview(msg)
        msg.release()  # asked, but the view lives: the ring space stays held
        held = rx.stats()["in_use"]
        assert held >= 1000
        for i in range(200):  # later messages come and are released: none goes back before it
            with tx.claim(8) as b:
                b[0:8] = struct.pack("<Q", i)
            with rx.receive(timeout=1.0):
                pass
        assert rx.stats()["in_use"] > held
        assert bytes(view[0:4]) == b"keep"
        view.release()
        gc.collect()
        assert rx.stats()["in_use"] == 0  # given back, with everything after it


def test_release_order_is_kept():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx, psyne.Channel(uri, role="producer") as tx:
        for i in range(3):
            with tx.claim(8) as b:
                b[0:8] = struct.pack("<Q", i)
        first, second, third = rx.receive_batch(3, timeout=1.0)
        third.release()
        second.release()
        assert rx.stats()["in_use"] > 0  # the first still holds them back
        first.release()
        assert rx.stats()["in_use"] == 0


def test_iteration_batches_and_stats():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx, psyne.Channel(uri, role="producer") as tx:
        for i in range(10):
            with tx.claim(8) as b:
                b[0:8] = struct.pack("<Q", i)
        got = [struct.unpack("<Q", m.tobytes())[0] for m in rx]
        assert got == list(range(10))
        assert rx.receive_batch(8, timeout=0) == []
        st = rx.stats()
        assert st["msgs_out"] == 10 and st["msgs_in"] == 10 and st["capacity"] >= 1 << 16


def test_errors_are_exceptions_with_errno():
    with pytest.raises(psyne.Error) as e:
        psyne.Channel("bogus://x")
    assert e.value.errno == 22
    uri = mem_uri()
    with psyne.Channel(uri, role="producer", capacity=4096) as tx:
        with pytest.raises(psyne.Error) as e:
            tx.receive(timeout=0)
        assert e.value.errno == 1  # EPERM: a producer handle
        with pytest.raises(psyne.Error) as e:
            tx.claim(1 << 20)
        assert e.value.errno == 90  # EMSGSIZE
    with psyne.Channel(mem_uri(), capacity=4096) as ch:
        ch.shutdown()
        with pytest.raises(psyne.Closed):
            ch.receive(timeout=0)


def test_c_producer_python_consumer_over_ipc():
    uri = ipc_uri()
    peer = subprocess.Popen([PEER, "send", uri, "20000", "100"], stdout=subprocess.PIPE, env=PEER_ENV)
    with psyne.Channel(uri, role="consumer", capacity=1 << 20, open_timeout=20) as rx:
        for i in range(20000):
            with rx.receive(timeout=20) as msg:
                data = memoryview(msg)
                assert struct.unpack_from("<Q", data)[0] == i and data[99] == i & 0xFF
                data.release()
        with pytest.raises(psyne.Closed):
            rx.receive(timeout=20)
    assert peer.wait(20) == 0


def test_python_producer_c_consumer_over_tcp():
    uri = f"tcp://127.0.0.1:{free_port()}"
    peer = subprocess.Popen([PEER, "recv", uri, "20000", "listen"], stdout=subprocess.PIPE, text=True, env=PEER_ENV)
    with psyne.Channel(uri, role="producer", capacity=1 << 20, open_timeout=20) as tx:
        payload = bytes(100)
        for i in range(20000):
            with tx.claim(100, timeout=20) as buf:
                buf[8:100] = bytes([i & 0xFF]) * 92
                buf[0:8] = struct.pack("<Q", i)
    out, _ = peer.communicate(timeout=30)
    assert peer.returncode == 0 and "ok received 20000" in out


def test_c_typed_messages_read_as_arrays():
    uri = ipc_uri()
    assert subprocess.run([PEER, "send-typed", uri], capture_output=True, env=PEER_ENV).returncode == 0  # kept
    with psyne.Channel(uri, role="consumer") as rx:
        with rx.receive(timeout=5) as msg:
            m = msg.array()
            assert m.dtype == np.float64 and m.shape == (3, 4) and m[2, 1] == 21.0
            del m
        with rx.receive(timeout=5) as msg:
            v = msg.array()
            assert v.dtype == np.float32 and v.shape == (100,) and v[99] == 99.0
            del v


def test_blocking_receive_releases_the_gil():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx, psyne.Channel(uri, role="producer") as tx:
        got = []
        t = threading.Thread(target=lambda: got.append(rx.receive(timeout=10)))
        t.start()
        count, end = 0, time.monotonic() + 0.3
        while time.monotonic() < end:  # runs only if the receiver let go of the GIL
            count += 1
        assert count > 1000
        with tx.claim(4) as b:
            b[0:4] = b"done"
        t.join(10)
        assert got and got[0].tobytes() == b"done"
        got[0].release()


def test_ctrl_c_interrupts_a_blocking_receive():
    code = ("import psyne, sys\n"
            "ch = psyne.Channel('memory://ctrl-c', capacity=4096)\n"
            "print('waiting', flush=True)\n"
            "try:\n"
            "    ch.receive()\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
            "    sys.exit(3)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "waiting"
    time.sleep(0.3)
    start = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 3 and "interrupted" in out
    assert time.monotonic() - start < 5


def test_fileno_with_asyncio():
    uri = mem_uri()
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx, psyne.Channel(uri, role="producer") as tx:
        async def main():
            loop = asyncio.get_running_loop()
            got = []
            done = asyncio.Event()

            def readable():
                for msg in rx:  # drain until empty: that re-arms the descriptor
                    got.append(struct.unpack("<Q", msg.tobytes())[0])
                    msg.release()
                if len(got) == 100:
                    done.set()

            loop.add_reader(rx.fileno(), readable)

            def send():
                for i in range(100):
                    with tx.claim(8) as b:
                        b[0:8] = struct.pack("<Q", i)
                    time.sleep(0.001)

            await asyncio.gather(loop.run_in_executor(None, send), asyncio.wait_for(done.wait(), 10))
            loop.remove_reader(rx.fileno())
            return got

        assert asyncio.run(main()) == list(range(100))


def test_asyncio_example_runs():
    out = subprocess.run([sys.executable, os.path.join(HERE, "..", "examples", "asyncio_consumer.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "received 1000 messages" in out.stdout


def test_close_waits_for_live_messages():
    uri = mem_uri()
    rx = psyne.Channel(uri, role="consumer", capacity=1 << 16)
    tx = psyne.Channel(uri, role="producer")
    with tx.claim(4) as b:
        b[0:4] = b"late"
    msg = rx.receive(timeout=1.0)
    view = memoryview(msg)
    rx.close()  # shuts down now; the handle goes with the last message
    assert rx.closed and bytes(view) == b"late"
    view.release()
    del msg, view
    gc.collect()
    tx.close()
