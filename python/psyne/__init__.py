# SPDX-License-Identifier: MIT
"""psyne: zero-copy messaging between threads, processes and machines.

    with psyne.Channel("ipc://frames", role="producer") as ch:
        with ch.claim(64) as buf:          # room in the ring, written in place
            buf[0:5] = b"hello"
            buf.commit(5)
        v = ch.claim_array("float32", (1024,))   # a numpy array whose data is the ring
        v[:] = 1.0
        v.send()

    with psyne.Channel("ipc://frames", role="consumer") as ch:
        msg = ch.receive(timeout=1.0)      # None if nothing came
        data = memoryview(msg)             # the record where it lies
        a = msg.array()                    # a typed message as a read-only numpy array
        msg.release()                      # or a with block, or garbage collection

A message stays held while any memoryview or array of it is alive. Blocking
calls release the GIL and return on Ctrl-C. Errors raise psyne.Error (an
OSError with errno); the end of a stream raises psyne.Closed; empty, full and
timed out are None.
"""
from ._psyne import (CLEAN_INVALID, CLEAN_LINGERING, F_HUGEPAGES, F_LEASES, F_LISTEN, F_PUBLISH, READY_RECV,
                     READY_SEND, TYPE_TENSOR, TYPE_USER_MIN, Claim, Closed, Error, Message, __version__, ipc_cleanup)
from ._psyne import Channel as _Channel

__all__ = ["Channel", "Claim", "ClaimedArray", "Closed", "Error", "Message", "ipc_cleanup", "READY_RECV",
           "READY_SEND", "TYPE_USER_MIN", "TYPE_TENSOR", "F_LISTEN", "F_HUGEPAGES", "F_LEASES", "F_PUBLISH",
           "CLEAN_LINGERING", "CLEAN_INVALID"]

# psyne's element types (psyne/tensor.h) by numpy dtype name.
_DTYPES = {"float32": 1, "float64": 2, "int8": 3, "uint8": 4, "int32": 5, "int64": 6}

try:
    import numpy as _np

    class ClaimedArray(_np.ndarray):
        """A typed message being built: a numpy array whose data is the ring.
        send() publishes it (and makes the array read-only: its bytes are the
        consumers' now); abort() gives the room back."""

        def send(self):
            claim = self._psyne_claim
            self.flags.writeable = False
            claim.commit()

        def abort(self):
            self.flags.writeable = False
            self._psyne_claim.abort()

        def __array_finalize__(self, obj):
            self._psyne_claim = getattr(obj, "_psyne_claim", None)
except ImportError:  # numpy is optional for raw bytes
    _np = None
    ClaimedArray = None


class Channel(_Channel):
    """Channel(uri, *, mode="spsc", role="any", capacity=0, wait="adaptive",
    flags=0, spin=None, yield_=None, ipc_perm=0, open_timeout=None,
    peer_timeout=None, link_timeout=None, max_peers=0, linger=None)

    The options of psyne_options; durations in seconds (a negative one: no
    limit; linger=False: PSYNE_NO_LINGER). A context manager."""

    def claim_array(self, dtype, shape, timeout=None):
        """A typed message of this dtype and shape (vector, matrix, tensor up
        to rank 8), 64-byte aligned in the ring, as a writable numpy array;
        None if the ring is full (timeout 0) or the wait timed out."""
        if _np is None:
            raise ImportError("claim_array needs numpy (python3-numpy)")
        dt = _np.dtype(dtype)
        code = _DTYPES.get(dt.name)
        if code is None:
            raise TypeError(f"dtype {dt.name}: psyne carries {', '.join(_DTYPES)}")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        claim = self._claim_tensor(code, shape, timeout)
        if claim is None:
            return None
        arr = _np.ndarray(shape, dtype=dt, buffer=claim).view(ClaimedArray)
        arr._psyne_claim = claim
        return arr
