# SPDX-License-Identifier: MIT
"""A psyne channel in an asyncio program: the channel's readiness descriptor
(fileno()) goes to loop.add_reader beside whatever else the loop serves.

    PYTHONPATH=build/python /usr/bin/python3 python/examples/asyncio_consumer.py

When the descriptor is readable, the callback receives until the channel is
empty (iterating the channel does that); that re-arms the descriptor, which
becomes readable again when the next message comes. The producer here is a
thread of this program writing to ipc://; it could as well be another
process, in C or Python.
"""
import asyncio
import os
import struct
import threading

import psyne

COUNT = 1000


def produce(uri):
    with psyne.Channel(uri, role="producer") as tx:
        for i in range(COUNT):
            with tx.claim(8) as buf:
                buf[0:8] = struct.pack("<Q", i)


async def main():
    uri = f"ipc://asyncio-example-{os.getpid()}"
    with psyne.Channel(uri, role="consumer", capacity=1 << 16) as rx:
        loop = asyncio.get_running_loop()
        finished = asyncio.Event()
        received = []

        def on_readable():
            try:
                for msg in rx:  # every message there now, in place
                    received.append(struct.unpack("<Q", msg.tobytes())[0])
                    msg.release()
            except psyne.Closed:
                pass
            if len(received) == COUNT:
                finished.set()

        loop.add_reader(rx.fileno(), on_readable)
        producer = threading.Thread(target=produce, args=(uri,))
        producer.start()
        ticks = 0
        while not finished.is_set():  # the loop stays free for other work meanwhile
            try:
                await asyncio.wait_for(finished.wait(), 0.01)
            except asyncio.TimeoutError:
                ticks += 1
        loop.remove_reader(rx.fileno())
        producer.join()
        assert received == list(range(COUNT))
        print(f"received {len(received)} messages in order; the loop ticked {ticks} times meanwhile")


asyncio.run(main())
