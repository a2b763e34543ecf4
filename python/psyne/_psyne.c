/* SPDX-License-Identifier: MIT */
/*
 * _psyne.c - the CPython extension under the psyne package (__init__.py):
 * channels, claims and received messages as Python objects over psyne's
 * public C API, with no copy of a payload anywhere.
 *
 * Memory safety is the design's centre: Python code may keep a memoryview
 * or a numpy array of a message longer than it meant to.
 *   - A Message counts the buffers exported from it; the ring space goes
 *     back to psyne only when the message is released (release(), a with
 *     block, or garbage collection) *and* no exported buffer is alive.
 *   - psyne releases a single-consumer ring up to a message's end, so the
 *     channel gives messages back in the order they were received: one
 *     released early waits for those before it.
 *   - A claim refuses to commit while a memoryview of it lives (the bytes
 *     would become the consumers'); a claimed numpy array is made read-only
 *     when it is sent.
 *   - Every Message and Claim holds its Channel; close() while any is alive
 *     shuts the channel down at once and frees the handle when the last goes.
 * Blocking calls release the GIL and wait in slices of SLICE_NS, checking
 * for signals in between, so Ctrl-C interrupts them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include <psyne.h>

#define SLICE_NS 50000000LL
#define PSYNE_STR2(x) #x
#define PSYNE_STR(x) PSYNE_STR2(x)
#define PSYNE_VERSION_STRING                                                                                           \
    PSYNE_STR(PSYNE_VERSION_MAJOR)                                                                                     \
    "." PSYNE_STR(PSYNE_VERSION_MINOR) "." PSYNE_STR(                                                                  \
        PSYNE_VERSION_PATCH) /* longest wait with the GIL released before signals are checked */

static PyObject *psyne_error;  /* psyne.Error(OSError) */
static PyObject *psyne_closed; /* psyne.Closed(psyne.Error): -EPIPE */

static PyObject *raise_rc(int rc)
{
    char msg[512];
    const char *detail = psyne_last_error();
    snprintf(msg, sizeof msg, "%s%s%s", psyne_strerror(rc), detail && *detail ? ": " : "", detail ? detail : "");
    PyObject *type = rc == -EPIPE ? psyne_closed : psyne_error;
    PyObject *exc = PyObject_CallFunction(type, "is", -rc, msg);
    if (exc) {
        PyErr_SetObject(type, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* timeout in seconds (None: forever, <= 0: do not wait) -> psyne's ns. */
static int timeout_of(PyObject *t, int64_t *ns)
{
    if (t == NULL || t == Py_None) {
        *ns = PSYNE_FOREVER;
        return 0;
    }
    double s = PyFloat_AsDouble(t);
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    *ns = s <= 0 ? PSYNE_NONBLOCK : (int64_t)(s * 1e9) > 0 ? (int64_t)(s * 1e9) : 1;
    return 0;
}

/* Runs call(ctx, timeout) as the timeout asks: non-blocking with the GIL
 * held; else with the GIL released, in slices, checking signals between
 * them. Returns the call's result, or INT_MIN with a Python exception set. */
typedef int (*wait_fn)(void *ctx, int64_t timeout_ns);

static int wait_call(wait_fn call, void *ctx, int64_t timeout_ns)
{
    /* First without waiting, the GIL held: most calls of a busy program
     * succeed at once, and then releasing the GIL would cost more. */
    int first = call(ctx, PSYNE_NONBLOCK);
    if (first != -EAGAIN || timeout_ns == PSYNE_NONBLOCK)
        return first;
    int64_t deadline = timeout_ns > 0 ? now_ns() + timeout_ns : 0;
    for (;;) {
        int64_t slice = SLICE_NS;
        if (deadline) {
            int64_t left = deadline - now_ns();
            if (left < slice)
                slice = left > 0 ? left : 1;
        }
        int rc;
        Py_BEGIN_ALLOW_THREADS rc = call(ctx, slice);
        Py_END_ALLOW_THREADS if (rc != -ETIMEDOUT) return rc;
        if (deadline && now_ns() >= deadline)
            return -ETIMEDOUT;
        if (PyErr_CheckSignals() < 0)
            return INT_MIN;
    }
}

/* __enter__ of every type here: the object itself. */
static PyObject *return_self(PyObject *self, PyObject *unused)
{
    (void)unused;
    Py_INCREF(self);
    return self;
}

/* ---- Channel ---- */

struct held {
    struct psyne_msg m;
    bool done; /* its Message is released and no buffer of it is alive */
};

typedef struct {
    PyObject_HEAD psyne_channel *ch;
    bool closing;    /* close() came while messages or claims were alive */
    Py_ssize_t live; /* Message and Claim objects alive */
    /* received messages not yet given back, oldest first: held[head..head+count) */
    struct held *held;
    size_t head, count, cap;
    uint64_t head_seq; /* sequence number of held[head] */
    int role;
} ChannelObject;

static PyTypeObject ChannelType, MessageType, ClaimType;

static void channel_really_close(ChannelObject *self)
{
    if (self->ch) {
        psyne_channel *ch = self->ch;
        self->ch = NULL;
        Py_BEGIN_ALLOW_THREADS psyne_channel_close(ch); /* tcp://: waits for the peer's acknowledgement */
        Py_END_ALLOW_THREADS
    }
}

/* An object that kept the channel alive is gone. */
static void channel_unlive(ChannelObject *self)
{
    if (--self->live == 0 && self->closing)
        channel_really_close(self);
}

/* Gives back to psyne every message at the front that is done. */
static void channel_flush(ChannelObject *self)
{
    while (self->count && self->held[self->head].done) {
        if (self->ch)
            psyne_release(self->ch, &self->held[self->head].m);
        self->head++;
        self->count--;
        self->head_seq++;
    }
    if (self->count == 0)
        self->head = 0;
}

/* Keeps m (just received) as the newest held message: its sequence number. */
static int channel_hold(ChannelObject *self, const struct psyne_msg *m, uint64_t *seq)
{
    if (self->head + self->count == self->cap) {
        if (self->head) { /* slide down */
            memmove(self->held, self->held + self->head, self->count * sizeof *self->held);
            self->head = 0;
        } else {
            size_t cap = self->cap ? self->cap * 2 : 64;
            struct held *grown = PyMem_Realloc(self->held, cap * sizeof *grown);
            if (!grown) {
                PyErr_NoMemory();
                return -1;
            }
            self->held = grown;
            self->cap = cap;
        }
    }
    self->held[self->head + self->count] = (struct held){*m, false};
    *seq = self->head_seq + self->count;
    self->count++;
    return 0;
}

static int role_of(PyObject *v, int *out)
{
    if (v == NULL || v == Py_None)
        return 0;
    if (PyLong_Check(v)) {
        *out = (int)PyLong_AsLong(v);
        return 0;
    }
    const char *s = PyUnicode_AsUTF8(v);
    if (!s)
        return -1;
    if (!strcmp(s, "any"))
        *out = PSYNE_ROLE_ANY;
    else if (!strcmp(s, "producer"))
        *out = PSYNE_ROLE_PRODUCER;
    else if (!strcmp(s, "consumer"))
        *out = PSYNE_ROLE_CONSUMER;
    else {
        PyErr_Format(PyExc_ValueError, "role %R: 'any', 'producer' or 'consumer'", v);
        return -1;
    }
    return 0;
}

static int mode_of(PyObject *v, int *out)
{
    static const char *const names[] = {"spsc", "spmc", "mpsc", "mpmc", "broadcast"};
    static const int modes[] = {PSYNE_MODE_SPSC, PSYNE_MODE_SPMC, PSYNE_MODE_MPSC, PSYNE_MODE_MPMC,
                                PSYNE_MODE_BROADCAST};
    if (v == NULL || v == Py_None)
        return 0;
    if (PyLong_Check(v)) {
        *out = (int)PyLong_AsLong(v);
        return 0;
    }
    const char *s = PyUnicode_AsUTF8(v);
    if (!s)
        return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i])) {
            *out = modes[i];
            return 0;
        }
    PyErr_Format(PyExc_ValueError, "mode %R: 'spsc', 'spmc', 'mpsc', 'mpmc' or 'broadcast'", v);
    return -1;
}

/* A duration in seconds for an option (None: 0, the default). */
static int seconds_of(PyObject *v, int64_t *ns)
{
    if (v == NULL || v == Py_None)
        return 0;
    double s = PyFloat_AsDouble(v);
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    *ns = s < 0 ? PSYNE_FOREVER : (int64_t)(s * 1e9);
    return 0;
}

struct open_args {
    psyne_channel **out;
    const char *uri;
    const struct psyne_options *o;
};

static int channel_init(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"uri",          "mode",         "role",      "capacity", "wait",
                             "flags",        "spin",         "yield_",    "ipc_perm", "open_timeout",
                             "peer_timeout", "link_timeout", "max_peers", "linger",   NULL};
    const char *uri;
    PyObject *mode = NULL, *role = NULL, *wait = NULL, *spin = NULL, *yield = NULL, *open_t = NULL, *peer_t = NULL,
             *link_t = NULL, *linger = NULL;
    unsigned long long capacity = 0;
    unsigned int flags = 0, ipc_perm = 0, max_peers = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$OOKOIOOIOOOIO", kwlist, &uri, &mode, &role, &capacity, &wait, &flags,
                                     &spin, &yield, &ipc_perm, &open_t, &peer_t, &link_t, &max_peers, &linger))
        return -1;
    if (self->ch) {
        PyErr_SetString(PyExc_RuntimeError, "Channel already open");
        return -1;
    }
    struct psyne_options o;
    psyne_options_init(&o);
    o.capacity = capacity;
    o.flags = flags;
    o.ipc_perm = ipc_perm;
    o.max_peers = max_peers;
    if (mode_of(mode, &o.mode) || role_of(role, &o.role) || seconds_of(spin, &o.spin_ns) ||
        seconds_of(yield, &o.yield_ns) || seconds_of(open_t, &o.open_timeout_ns) ||
        seconds_of(peer_t, &o.peer_timeout_ns) || seconds_of(link_t, &o.link_timeout_ns))
        return -1;
    if (spin == NULL || spin == Py_None)
        o.spin_ns = -1;
    if (yield == NULL || yield == Py_None)
        o.yield_ns = -1;
    if (linger == Py_False)
        o.linger_ns = PSYNE_NO_LINGER;
    else if (seconds_of(linger, &o.linger_ns))
        return -1;
    if (wait && wait != Py_None) {
        const char *w = PyUnicode_AsUTF8(wait);
        if (!w)
            return -1;
        if (!strcmp(w, "spin"))
            o.wait = PSYNE_WAIT_SPIN;
        else if (strcmp(w, "adaptive")) {
            PyErr_Format(PyExc_ValueError, "wait %R: 'adaptive' or 'spin'", wait);
            return -1;
        }
    }
    int rc;
    psyne_channel *ch = NULL;
    Py_BEGIN_ALLOW_THREADS rc = psyne_channel_open(&ch, uri, &o); /* ipc:// and tcp:// may wait */
    Py_END_ALLOW_THREADS if (rc < 0)
    {
        raise_rc(rc);
        return -1;
    }
    self->ch = ch;
    self->role = o.role;
    return 0;
}

static void channel_dealloc(ChannelObject *self)
{
    /* Messages and claims hold the channel: none is alive here. */
    channel_really_close(self);
    PyMem_Free(self->held);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static bool channel_usable(ChannelObject *self)
{
    if (self->ch && !self->closing)
        return true;
    PyErr_SetString(PyExc_ValueError, "the channel is closed");
    return false;
}

/* ---- Message ---- */

typedef struct {
    PyObject_HEAD ChannelObject *chan;
    struct psyne_msg m;
    uint64_t seq;
    Py_ssize_t exports;
    bool released; /* the user let go (release, with, garbage) */
    bool given;    /* marked done in the channel */
} MessageObject;

/* Gives the message back if the user let go and no buffer of it lives. */
static void message_settle(MessageObject *self)
{
    if (self->given || !self->released || self->exports)
        return;
    self->given = true;
    ChannelObject *c = self->chan;
    c->held[c->head + (size_t)(self->seq - c->head_seq)].done = true;
    channel_flush(c);
}

static PyObject *message_new(ChannelObject *chan, const struct psyne_msg *m)
{
    MessageObject *msg = PyObject_New(MessageObject, &MessageType);
    if (!msg)
        return NULL;
    if (channel_hold(chan, m, &msg->seq) < 0) {
        PyObject_Free(msg);
        return NULL;
    }
    Py_INCREF(chan);
    chan->live++;
    msg->chan = chan;
    msg->m = *m;
    msg->exports = 0;
    msg->released = false;
    msg->given = false;
    return (PyObject *)msg;
}

static void message_dealloc(MessageObject *self)
{
    self->released = true;
    message_settle(self); /* no buffer can be alive: each holds a reference */
    ChannelObject *c = self->chan;
    PyObject_Free(self);
    channel_unlive(c);
    Py_DECREF(c);
}

static int message_getbuffer(MessageObject *self, Py_buffer *view, int flags)
{
    if (self->released) {
        PyErr_SetString(PyExc_BufferError, "the message was released");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->m.data, (Py_ssize_t)self->m.length, 1, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void message_releasebuffer(MessageObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
    message_settle(self);
}

static PyObject *message_release(MessageObject *self, PyObject *unused)
{
    (void)unused;
    self->released = true;
    message_settle(self);
    Py_RETURN_NONE;
}

static PyObject *message_exit(MessageObject *self, PyObject *args)
{
    (void)args;
    return message_release(self, NULL);
}

static PyObject *message_bytes(MessageObject *self, PyObject *unused)
{
    (void)unused;
    if (self->released) {
        PyErr_SetString(PyExc_BufferError, "the message was released");
        return NULL;
    }
    return PyBytes_FromStringAndSize(self->m.data, (Py_ssize_t)self->m.length);
}

static const char *const dtype_names[] = {NULL, "float32", "float64", "int8", "uint8", "int32", "int64"};

/* A typed message as a numpy array over the record (no copy): its base is
 * a buffer of this message, which stays held while the array lives. */
static PyObject *message_array(MessageObject *self, PyObject *unused)
{
    (void)unused;
    if (self->released) {
        PyErr_SetString(PyExc_BufferError, "the message was released");
        return NULL;
    }
    struct psyne_tensor t;
    int rc = psyne_tensor_view(&self->m, 0, -1, &t);
    if (rc < 0)
        return raise_rc(rc);
    if (t.dtype < 1 || t.dtype > 6) {
        PyErr_Format(PyExc_TypeError, "element type %d has no numpy dtype", t.dtype);
        return NULL;
    }
    size_t item = psyne_dtype_size(t.dtype);
    PyObject *np = PyImport_ImportModule("numpy");
    if (!np)
        return NULL;
    PyObject *shape = PyTuple_New(t.rank), *strides = PyTuple_New(t.rank);
    for (int i = 0; shape && strides && i < t.rank; i++) {
        PyTuple_SET_ITEM(shape, i, PyLong_FromUnsignedLongLong(t.shape[i]));
        PyTuple_SET_ITEM(strides, i, PyLong_FromUnsignedLongLong(t.strides[i] * item));
    }
    PyObject *result = NULL;
    PyObject *ndarray = PyObject_GetAttrString(np, "ndarray");
    PyObject *kw = Py_BuildValue("{s:O,s:s,s:O,s:n,s:O}", "shape", shape, "dtype", dtype_names[t.dtype], "buffer",
                                 (PyObject *)self, "offset", (Py_ssize_t)((char *)t.data - (char *)self->m.data),
                                 "strides", strides);
    PyObject *noargs = PyTuple_New(0);
    if (ndarray && kw && noargs)
        result = PyObject_Call(ndarray, noargs, kw);
    Py_XDECREF(noargs);
    Py_XDECREF(kw);
    Py_XDECREF(ndarray);
    Py_XDECREF(shape);
    Py_XDECREF(strides);
    Py_DECREF(np);
    return result;
}

static PyObject *message_get_type(MessageObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(self->m.type);
}

static PyObject *message_get_peer(MessageObject *self, void *c)
{
    (void)c;
    return PyLong_FromUnsignedLong(self->m.peer);
}

static PyObject *message_get_address(MessageObject *self, void *c)
{
    (void)c;
    return PyLong_FromVoidPtr(self->m.data);
}

static Py_ssize_t message_len(MessageObject *self)
{
    return (Py_ssize_t)self->m.length;
}

static PyObject *message_repr(MessageObject *self)
{
    return PyUnicode_FromFormat("<psyne.Message type=%u length=%u%s>", self->m.type, self->m.length,
                                self->released ? " released" : "");
}

static PyBufferProcs message_as_buffer = {(getbufferproc)message_getbuffer, (releasebufferproc)message_releasebuffer};
static PySequenceMethods message_as_sequence = {.sq_length = (lenfunc)message_len};

static PyMethodDef message_methods[] = {
    {"release", (PyCFunction)message_release, METH_NOARGS,
     "Gives the message back (once no memoryview or array of it is alive)."},
    {"tobytes", (PyCFunction)message_bytes, METH_NOARGS, "A copy of the payload."},
    {"array", (PyCFunction)message_array, METH_NOARGS,
     "A typed message (vector, matrix, tensor) as a read-only numpy array over the ring, no copy."},
    {"__enter__", return_self, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)message_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef message_getset[] = {
    {"type", (getter)message_get_type, NULL, "the message's type id", NULL},
    {"peer", (getter)message_get_peer, NULL, "max_peers listeners: the client it came from", NULL},
    {"address", (getter)message_get_address, NULL, "where the payload lies in the ring", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MessageType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "psyne.Message",
    .tp_doc = "A received message, read where it lies in the ring (buffer protocol, read-only).",
    .tp_basicsize = sizeof(MessageObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)message_dealloc,
    .tp_as_buffer = &message_as_buffer,
    .tp_as_sequence = &message_as_sequence,
    .tp_methods = message_methods,
    .tp_getset = message_getset,
    .tp_repr = (reprfunc)message_repr,
};

/* ---- Claim ---- */

enum claim_state { CLAIM_OPEN, CLAIM_COMMITTED, CLAIM_ABORTED };

typedef struct {
    PyObject_HEAD ChannelObject *chan;
    struct psyne_claimed c;
    struct psyne_tensor t; /* a typed claim's */
    bool tensor;
    enum claim_state state;
    Py_ssize_t exports;
} ClaimObject;

static void *claim_data(ClaimObject *self)
{
    return self->tensor ? self->t.data : self->c.data;
}

static Py_ssize_t claim_size(ClaimObject *self)
{
    if (!self->tensor)
        return (Py_ssize_t)self->c.capacity;
    uint64_t n = 1;
    for (int i = 0; i < self->t.rank; i++)
        n *= self->t.shape[i];
    return (Py_ssize_t)(n * psyne_dtype_size(self->t.dtype));
}

static PyObject *claim_new(ChannelObject *chan)
{
    ClaimObject *cl = PyObject_New(ClaimObject, &ClaimType);
    if (!cl)
        return NULL;
    memset(&cl->c, 0, sizeof cl->c);
    memset(&cl->t, 0, sizeof cl->t);
    cl->tensor = false;
    cl->state = CLAIM_OPEN;
    cl->exports = 0;
    Py_INCREF(chan);
    chan->live++;
    cl->chan = chan;
    return (PyObject *)cl;
}

static void claim_dealloc(ClaimObject *self)
{
    if (self->state == CLAIM_OPEN && self->chan->ch) /* never committed: the space goes back */
        psyne_abort(self->chan->ch, self->tensor ? &self->t.claim : &self->c);
    ChannelObject *c = self->chan;
    PyObject_Free(self);
    channel_unlive(c);
    Py_DECREF(c);
}

static int claim_getbuffer(ClaimObject *self, Py_buffer *view, int flags)
{
    if (self->state != CLAIM_OPEN) {
        PyErr_SetString(PyExc_BufferError, "the claim was committed or aborted");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, claim_data(self), claim_size(self), 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void claim_releasebuffer(ClaimObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

static bool claim_check_open(ClaimObject *self)
{
    if (self->state == CLAIM_OPEN)
        return true;
    PyErr_SetString(PyExc_ValueError, "the claim was committed or aborted");
    return false;
}

static PyObject *claim_commit(ClaimObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"length", "type", NULL};
    PyObject *length = Py_None;
    unsigned int type = PSYNE_TYPE_USER_MIN;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OI", kwlist, &length, &type) || !claim_check_open(self))
        return NULL;
    /* A raw claim's bytes become the consumers' with the commit: a view
     * that outlived it could write into them. A typed claim's array is
     * made read-only by send() (psyne/__init__.py). */
    if (self->exports && !self->tensor) {
        PyErr_SetString(PyExc_BufferError,
                        "a memoryview of the claim is still alive: release it before commit (or write through the "
                        "claim itself: claim[a:b] = ...)");
        return NULL;
    }
    int rc;
    if (self->tensor) {
        rc = psyne_commit_tensor(self->chan->ch, &self->t);
    } else {
        Py_ssize_t n = length == Py_None ? (Py_ssize_t)self->c.capacity : PyLong_AsSsize_t(length);
        if (n == -1 && PyErr_Occurred())
            return NULL;
        if (n < 0 || n > (Py_ssize_t)self->c.capacity) {
            PyErr_Format(PyExc_ValueError, "commit of %zd bytes in a claim of %u", n, self->c.capacity);
            return NULL;
        }
        rc = psyne_commit(self->chan->ch, &self->c, (size_t)n, type);
    }
    if (rc < 0)
        return raise_rc(rc);
    self->state = CLAIM_COMMITTED;
    Py_RETURN_NONE;
}

static PyObject *claim_abort(ClaimObject *self, PyObject *unused)
{
    (void)unused;
    if (self->state != CLAIM_OPEN)
        Py_RETURN_NONE;
    if (self->exports && !self->tensor) {
        PyErr_SetString(PyExc_BufferError, "a memoryview of the claim is still alive: release it before abort");
        return NULL;
    }
    int rc = psyne_abort(self->chan->ch, self->tensor ? &self->t.claim : &self->c);
    self->state = CLAIM_ABORTED;
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

/* The block ends: an exception aborts, else what is still open is committed
 * whole. */
static PyObject *claim_exit(ClaimObject *self, PyObject *args)
{
    PyObject *type = PyTuple_GET_ITEM(args, 0);
    if (self->state != CLAIM_OPEN)
        Py_RETURN_FALSE;
    PyObject *none = PyTuple_New(0);
    PyObject *r = !none ? NULL : type != Py_None ? claim_abort(self, NULL) : claim_commit(self, none, NULL);
    Py_XDECREF(none);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

/* claim[i], claim[a:b] and claim[a:b] = bytes, through a memoryview that
 * lives only for the call. */
static PyObject *claim_subscript(ClaimObject *self, PyObject *key)
{
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self);
    if (!mv)
        return NULL;
    PyObject *r = PyObject_GetItem(mv, key);
    if (r && PyMemoryView_Check(r)) { /* a slice: copy it out, the view must not escape */
        PyObject *b = PyBytes_FromObject(r);
        Py_DECREF(r);
        r = b;
    }
    PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
    Py_XDECREF(rel);
    Py_DECREF(mv);
    return r;
}

static int claim_ass_subscript(ClaimObject *self, PyObject *key, PyObject *value)
{
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "claim bytes cannot be deleted");
        return -1;
    }
    PyObject *mv = PyMemoryView_FromObject((PyObject *)self);
    if (!mv)
        return -1;
    int rc = PyObject_SetItem(mv, key, value);
    PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
    Py_XDECREF(rel);
    Py_DECREF(mv);
    return rc;
}

static Py_ssize_t claim_len(ClaimObject *self)
{
    return claim_size(self);
}

static PyObject *claim_get_address(ClaimObject *self, void *c)
{
    (void)c;
    return PyLong_FromVoidPtr(claim_data(self));
}

static PyBufferProcs claim_as_buffer = {(getbufferproc)claim_getbuffer, (releasebufferproc)claim_releasebuffer};
static PyMappingMethods claim_as_mapping = {(lenfunc)claim_len, (binaryfunc)claim_subscript,
                                            (objobjargproc)claim_ass_subscript};

static PyMethodDef claim_methods[] = {
    {"commit", (PyCFunction)(void (*)(void))claim_commit, METH_VARARGS | METH_KEYWORDS,
     "commit(length=None, type=PSYNE_TYPE_USER_MIN): publishes the first length bytes (all by default)."},
    {"abort", (PyCFunction)claim_abort, METH_NOARGS, "Gives the claimed space back unsent."},
    {"__enter__", return_self, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)claim_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef claim_getset[] = {
    {"address", (getter)claim_get_address, NULL, "where the claimed bytes lie in the ring", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClaimType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "psyne.Claim",
    .tp_doc = "Room claimed in the ring (writable buffer): write it in place, then commit() or abort().",
    .tp_basicsize = sizeof(ClaimObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)claim_dealloc,
    .tp_as_buffer = &claim_as_buffer,
    .tp_as_mapping = &claim_as_mapping,
    .tp_methods = claim_methods,
    .tp_getset = claim_getset,
};

/* ---- Channel methods ---- */

struct claim_call {
    psyne_channel *ch;
    size_t len;
    struct psyne_claimed *c;
    struct psyne_tensor *t;
    int dtype, rank;
    uint64_t elements;
};

static int do_claim(void *ctx, int64_t timeout_ns)
{
    struct claim_call *k = ctx;
    return psyne_claim(k->ch, k->len, k->c, timeout_ns);
}

static int do_claim_tensor(void *ctx, int64_t timeout_ns)
{
    struct claim_call *k = ctx;
    return psyne_claim_tensor(k->ch, k->dtype, k->rank, k->elements, k->t, timeout_ns);
}

/* A claim that did not happen: the object goes (nothing to give back);
 * full or timed out is None, else the error (INT_MIN: one is set). */
static PyObject *claim_failed(ClaimObject *cl, int rc)
{
    cl->state = CLAIM_ABORTED;
    Py_DECREF(cl);
    if (rc == INT_MIN)
        return NULL;
    if (rc == -EAGAIN || rc == -ETIMEDOUT)
        Py_RETURN_NONE;
    return raise_rc(rc);
}

static PyObject *channel_claim(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"nbytes", "timeout", NULL};
    Py_ssize_t n;
    PyObject *timeout = Py_None;
    int64_t ns;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "n|O", kwlist, &n, &timeout) || timeout_of(timeout, &ns) ||
        !channel_usable(self))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "a claim of a negative size");
        return NULL;
    }
    ClaimObject *cl = (ClaimObject *)claim_new(self);
    if (!cl)
        return NULL;
    struct claim_call k = {.ch = self->ch, .len = (size_t)n, .c = &cl->c};
    int rc = wait_call(do_claim, &k, ns);
    if (rc == 0)
        return (PyObject *)cl;
    return claim_failed(cl, rc);
}

/* _claim_tensor(dtype_code, shape, timeout): a typed claim shaped so. */
static PyObject *channel_claim_tensor(ChannelObject *self, PyObject *args)
{
    int dtype;
    PyObject *shape, *timeout = Py_None;
    int64_t ns;
    if (!PyArg_ParseTuple(args, "iO|O", &dtype, &shape, &timeout) || timeout_of(timeout, &ns) || !channel_usable(self))
        return NULL;
    PyObject *seq = PySequence_Fast(shape, "shape must be a sequence of ints");
    if (!seq)
        return NULL;
    Py_ssize_t rank = PySequence_Fast_GET_SIZE(seq);
    uint64_t dims[PSYNE_TENSOR_MAX_RANK], elements = 1;
    if (rank > PSYNE_TENSOR_MAX_RANK) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "rank %zd: at most %d", rank, PSYNE_TENSOR_MAX_RANK);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < rank; i++) {
        long long d = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (d < 0) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a negative dimension");
            return NULL;
        }
        dims[i] = (uint64_t)d;
        elements *= dims[i];
    }
    Py_DECREF(seq);
    ClaimObject *cl = (ClaimObject *)claim_new(self);
    if (!cl)
        return NULL;
    cl->tensor = true;
    struct claim_call k = {
        .ch = self->ch, .t = &cl->t, .dtype = dtype, .rank = rank ? (int)rank : 1, .elements = elements};
    int rc = wait_call(do_claim_tensor, &k, ns);
    if (rc == 0 && (rc = psyne_tensor_reshape(&cl->t, (int)rank, dims, NULL)) < 0)
        psyne_abort(self->ch, &cl->t.claim);
    if (rc == 0)
        return (PyObject *)cl;
    return claim_failed(cl, rc);
}

struct receive_call {
    psyne_channel *ch;
    struct psyne_msg *msgs;
    unsigned max;
};

static int do_receive(void *ctx, int64_t timeout_ns)
{
    struct receive_call *k = ctx;
    return psyne_receive_batch(k->ch, k->msgs, k->max, timeout_ns);
}

/* Receives up to max messages: the count, 0 for nothing (-EAGAIN,
 * -ETIMEDOUT), or -1 with an exception (Closed at -EPIPE). */
static int receive_into(ChannelObject *self, struct psyne_msg *msgs, unsigned max, int64_t ns)
{
    if (!channel_usable(self))
        return -1;
    struct receive_call k = {self->ch, msgs, max};
    int rc = wait_call(do_receive, &k, ns);
    if (rc == INT_MIN)
        return -1;
    if (rc == -EAGAIN || rc == -ETIMEDOUT)
        return 0;
    if (rc < 0) {
        raise_rc(rc);
        return -1;
    }
    return rc;
}

static PyObject *channel_receive(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    int64_t ns;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O", kwlist, &timeout) || timeout_of(timeout, &ns))
        return NULL;
    struct psyne_msg m;
    int n = receive_into(self, &m, 1, ns);
    if (n < 0)
        return NULL;
    if (n == 0)
        Py_RETURN_NONE;
    return message_new(self, &m);
}

static PyObject *channel_receive_batch(ChannelObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max", "timeout", NULL};
    unsigned int max = 64;
    PyObject *timeout = Py_None;
    int64_t ns;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|IO", kwlist, &max, &timeout) || timeout_of(timeout, &ns))
        return NULL;
    if (max == 0 || max > 4096) {
        PyErr_SetString(PyExc_ValueError, "max must be 1 to 4096");
        return NULL;
    }
    struct psyne_msg stack[64], *msgs = max <= 64 ? stack : PyMem_Malloc(max * sizeof *msgs);
    if (!msgs)
        return PyErr_NoMemory();
    int n = receive_into(self, msgs, max, ns);
    PyObject *list = n < 0 ? NULL : PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        PyObject *msg = message_new(self, &msgs[i]);
        if (!msg) { /* the rest are never seen by Python: give them back in order */
            for (int j = i; j < n; j++) {
                uint64_t seq;
                if (channel_hold(self, &msgs[j], &seq) == 0)
                    self->held[self->head + (size_t)(seq - self->head_seq)].done = true;
            }
            channel_flush(self);
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, msg);
    }
    if (msgs != stack)
        PyMem_Free(msgs);
    return list;
}

/* for msg in ch: every message there now, without waiting. */
static PyObject *channel_iter(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static PyObject *channel_next(ChannelObject *self)
{
    struct psyne_msg m;
    int n = receive_into(self, &m, 1, PSYNE_NONBLOCK);
    if (n <= 0) {
        if (n < 0 && PyErr_ExceptionMatches(psyne_closed))
            PyErr_Clear(); /* the stream ended: so does the iteration */
        return NULL;
    }
    return message_new(self, &m);
}

static PyObject *channel_stats(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (!channel_usable(self))
        return NULL;
    struct psyne_stats s;
    int rc = psyne_channel_stats(self->ch, &s);
    if (rc < 0)
        return raise_rc(rc);
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:i,s:i,s:K,s:K,s:i,s:i,s:K,s:K,s:K,s:K,s:K,s:i,s:K,s:i,s:K}",
        "capacity", s.capacity, "in_use", s.in_use, "high_water", s.high_water, "msgs_out", s.msgs_out, "bytes_out",
        s.bytes_out, "msgs_in", s.msgs_in, "bytes_in", s.bytes_in, "full_events", s.full_events, "empty_events",
        s.empty_events, "waits", s.waits, "wakeups", s.wakeups, "mode", s.mode, "subscribers", s.subscribers,
        "peers_lost", s.peers_lost, "claims_recovered", s.claims_recovered, "producers", s.producers, "consumers",
        s.consumers, "views_recovered", s.views_recovered, "tcp_reconnects", s.tcp_reconnects, "tcp_protocol_errors",
        s.tcp_protocol_errors, "tcp_send_calls", s.tcp_send_calls, "tcp_recv_calls", s.tcp_recv_calls, "tcp_connected",
        s.tcp_connected, "page_size", s.page_size, "segments", s.segments, "tcp_peers", s.tcp_peers);
}

/* The descriptor fileno() gives: a producer's for claims, any other
 * handle's for receives. */
static int default_event(const ChannelObject *self)
{
    return self->role == PSYNE_ROLE_PRODUCER ? PSYNE_READY_SEND : PSYNE_READY_RECV;
}

static PyObject *fd_of(ChannelObject *self, int event)
{
    if (!channel_usable(self))
        return NULL;
    int fd = psyne_channel_fd(self->ch, event);
    return fd < 0 ? raise_rc(fd) : PyLong_FromLong(fd);
}

static PyObject *channel_fd(ChannelObject *self, PyObject *args)
{
    int event = default_event(self);
    if (!PyArg_ParseTuple(args, "|i", &event))
        return NULL;
    return fd_of(self, event);
}

static PyObject *channel_fileno(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    return fd_of(self, default_event(self));
}

static PyObject *channel_shutdown(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (!channel_usable(self))
        return NULL;
    int rc = psyne_channel_shutdown(self->ch);
    if (rc < 0)
        return raise_rc(rc);
    Py_RETURN_NONE;
}

/* Closes now, or (messages or claims alive) shuts the channel down now and
 * frees the handle when the last of them goes. */
static PyObject *channel_close(ChannelObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->ch || self->closing)
        Py_RETURN_NONE;
    if (self->live) {
        self->closing = true;
        psyne_channel_shutdown(self->ch);
    } else {
        channel_really_close(self);
    }
    Py_RETURN_NONE;
}

static PyObject *channel_exit(ChannelObject *self, PyObject *args)
{
    (void)args;
    PyObject *r = channel_close(self, NULL);
    Py_XDECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *channel_get_closed(ChannelObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(!self->ch || self->closing);
}

static PyMethodDef channel_methods[] = {
    {"claim", (PyCFunction)(void (*)(void))channel_claim, METH_VARARGS | METH_KEYWORDS,
     "claim(nbytes, timeout=None) -> Claim, or None if full (timeout 0) or timed out."},
    {"_claim_tensor", (PyCFunction)channel_claim_tensor, METH_VARARGS, NULL},
    {"receive", (PyCFunction)(void (*)(void))channel_receive, METH_VARARGS | METH_KEYWORDS,
     "receive(timeout=None) -> Message, or None if empty (timeout 0) or timed out; raises Closed at the end."},
    {"receive_batch", (PyCFunction)(void (*)(void))channel_receive_batch, METH_VARARGS | METH_KEYWORDS,
     "receive_batch(max=64, timeout=None) -> list of Messages (empty if none came)."},
    {"stats", (PyCFunction)channel_stats, METH_NOARGS, "The channel's counters (psyne_channel_stats) as a dict."},
    {"fd", (PyCFunction)channel_fd, METH_VARARGS, "fd(event=READY_RECV): the readiness descriptor."},
    {"fileno", (PyCFunction)channel_fileno, METH_NOARGS,
     "The readiness descriptor for receives (for a producer: for claims), for select and asyncio."},
    {"shutdown", (PyCFunction)channel_shutdown, METH_NOARGS, "Shuts the channel down for every handle."},
    {"close", (PyCFunction)channel_close, METH_NOARGS, "Closes the handle (once its messages and claims are gone)."},
    {"__enter__", return_self, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)channel_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef channel_getset[] = {
    {"closed", (getter)channel_get_closed, NULL, "whether close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ChannelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "psyne._psyne.Channel",
    .tp_doc = "Channel(uri, *, mode, role, capacity, ...): a psyne channel handle.",
    .tp_basicsize = sizeof(ChannelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)channel_init,
    .tp_dealloc = (destructor)channel_dealloc,
    .tp_iter = channel_iter,
    .tp_iternext = (iternextfunc)channel_next,
    .tp_methods = channel_methods,
    .tp_getset = channel_getset,
};

static PyObject *module_cleanup(PyObject *m, PyObject *args)
{
    (void)m;
    int flags = 0;
    if (!PyArg_ParseTuple(args, "|i", &flags))
        return NULL;
    int rc = psyne_ipc_cleanup(flags);
    return rc < 0 ? raise_rc(rc) : PyLong_FromLong(rc);
}

static PyMethodDef module_methods[] = {
    {"ipc_cleanup", module_cleanup, METH_VARARGS, "Removes ipc:// segments no live process holds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "psyne._psyne", .m_doc = "psyne's C extension",
                                    .m_size = -1, .m_methods = module_methods};

PyMODINIT_FUNC PyInit__psyne(void)
{
    if (PyType_Ready(&ChannelType) < 0 || PyType_Ready(&MessageType) < 0 || PyType_Ready(&ClaimType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    psyne_error =
        PyErr_NewExceptionWithDoc("psyne.Error", "A psyne call failed (errno, psyne's message).", PyExc_OSError, NULL);
    psyne_closed =
        PyErr_NewExceptionWithDoc("psyne.Closed", "The channel was shut down and drained (EPIPE).", psyne_error, NULL);
    Py_INCREF(&ChannelType);
    PyModule_AddObject(m, "Channel", (PyObject *)&ChannelType);
    Py_INCREF(&MessageType);
    PyModule_AddObject(m, "Message", (PyObject *)&MessageType);
    Py_INCREF(&ClaimType);
    PyModule_AddObject(m, "Claim", (PyObject *)&ClaimType);
    PyModule_AddObject(m, "Error", psyne_error);
    PyModule_AddObject(m, "Closed", psyne_closed);
    PyModule_AddStringConstant(m, "__version__", PSYNE_VERSION_STRING);
    PyModule_AddIntConstant(m, "READY_RECV", PSYNE_READY_RECV);
    PyModule_AddIntConstant(m, "READY_SEND", PSYNE_READY_SEND);
    PyModule_AddIntConstant(m, "TYPE_USER_MIN", PSYNE_TYPE_USER_MIN);
    PyModule_AddIntConstant(m, "TYPE_TENSOR", PSYNE_TYPE_TENSOR);
    PyModule_AddIntConstant(m, "F_LISTEN", PSYNE_F_LISTEN);
    PyModule_AddIntConstant(m, "F_HUGEPAGES", PSYNE_F_HUGEPAGES);
    PyModule_AddIntConstant(m, "F_LEASES", PSYNE_F_LEASES);
    PyModule_AddIntConstant(m, "F_PUBLISH", PSYNE_F_PUBLISH);
    PyModule_AddIntConstant(m, "CLEAN_LINGERING", PSYNE_CLEAN_LINGERING);
    PyModule_AddIntConstant(m, "CLEAN_INVALID", PSYNE_CLEAN_INVALID);
    return m;
}
