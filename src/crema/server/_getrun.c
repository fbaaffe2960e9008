/*
 * Serve a run of plain GET requests straight from the input bytes
 * (crema.server._getrun).
 *
 * Optional: crema.server.plain falls back to its pure-Python path (the RESP
 * parser, then the store lookups) when this module is not built; replies and
 * counters are identical, only slower.
 *
 * get_run(data, offset, shards, now_ms, protocol, max_key, max_count, max_reply)
 *     -> (consumed, reply, count, hits)
 *
 *     Consumes the longest prefix of data[offset:] made of complete requests
 *     spelled exactly "*2\r\n$3\r\nGET\r\n$<n>\r\n<key>\r\n" (GET, get or
 *     Get; <n> in canonical decimal: no sign, no leading zero, at most
 *     max_key). It stops before anything else: another command or spelling,
 *     an incomplete request, a length it does not take (the Python parser
 *     then decides, errors included), an entry that is not a tuple holding
 *     bytes and an int-or-None expiry, after max_count requests, or once the
 *     reply holds max_reply bytes or more.
 *
 *     Each key is looked up in shards[hash(key) & 255] (a list of 256 dicts
 *     key -> (value, expiry_ms | None, seq)). A key is live when its expiry
 *     is None or greater than now_ms. The reply of a live key is
 *     "$<len>\r\n<value>\r\n", else the null of the protocol: "$-1\r\n"
 *     (RESP2) or "_\r\n" (RESP3). Returns the bytes consumed, the replies
 *     concatenated, the number of requests served and how many were hits.
 *
 * set_request(data, max_bulk) -> (key, value) | None
 *
 *     The key and value of data when data is exactly one request spelled
 *     "*3\r\n$3\r\nSET\r\n$<n>\r\n<key>\r\n$<m>\r\n<value>\r\n" (SET, set or
 *     Set; lengths canonical and at most max_bulk), else None: the Python
 *     parser then takes the bytes (errors included).
 *
 * Nothing is allocated from a length before the bytes it counts are known to
 * be in the buffer: a key is copied only once it and its CRLF are there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define SHARDS 256
#define MAX_DIGITS 18 /* fits a long long: bulk lengths beyond are refused anyway */

typedef struct {
    char *data;
    size_t used;
    size_t cap;
} outbuf;

static int out_reserve(outbuf *out, size_t more)
{
    if (more > PY_SSIZE_T_MAX - out->used) {
        PyErr_NoMemory();
        return -1;
    }
    size_t need = out->used + more;
    if (need <= out->cap) {
        return 0;
    }
    size_t cap = out->cap ? out->cap : 4096;
    while (cap < need) {
        cap = cap > PY_SSIZE_T_MAX / 2 ? (size_t)PY_SSIZE_T_MAX : cap * 2;
    }
    char *grown = PyMem_Realloc(out->data, cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out->data = grown;
    out->cap = cap;
    return 0;
}

static int is_get(const unsigned char *p)
{
    return (p[0] == 'G' && p[1] == 'E' && p[2] == 'T') ||
           (p[0] == 'g' && p[1] == 'e' && p[2] == 't') ||
           (p[0] == 'G' && p[1] == 'e' && p[2] == 't');
}

/* The value of a live entry (borrowed), Py_None if missing or expired, NULL to
 * stop before this request (an entry of another shape), or NULL with an
 * exception set. */
static PyObject *lookup(PyObject *shards, PyObject *key, long long now, int *stop)
{
    Py_hash_t h = PyObject_Hash(key);
    if (h == -1) {
        return NULL;
    }
    PyObject *shard = PyList_GET_ITEM(shards, (Py_uhash_t)h & (SHARDS - 1));
    if (!PyDict_CheckExact(shard)) {
        *stop = 1;
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(shard, key);
    if (entry == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        return Py_None;
    }
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 2) {
        *stop = 1;
        return NULL;
    }
    PyObject *value = PyTuple_GET_ITEM(entry, 0);
    PyObject *expiry = PyTuple_GET_ITEM(entry, 1);
    if (!PyBytes_CheckExact(value)) {
        *stop = 1;
        return NULL;
    }
    if (expiry != Py_None) {
        if (!PyLong_CheckExact(expiry)) {
            *stop = 1;
            return NULL;
        }
        int overflow = 0;
        long long at = PyLong_AsLongLongAndOverflow(expiry, &overflow);
        if (at == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow < 0 || (overflow == 0 && at <= now)) {
            return Py_None; /* expired */
        }
    }
    return value;
}

static PyObject *getrun_get_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "get_run() takes exactly 8 arguments");
        return NULL;
    }
    PyObject *shards = args[2];
    if (!PyList_CheckExact(shards) || PyList_GET_SIZE(shards) != SHARDS) {
        PyErr_SetString(PyExc_TypeError, "shards must be a list of 256 dicts");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long long now = PyLong_AsLongLong(args[3]);
    if (now == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long protocol = PyLong_AsLong(args[4]);
    if (protocol == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t max_key = PyLong_AsSsize_t(args[5]);
    if (max_key == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t max_count = PyLong_AsSsize_t(args[6]);
    if (max_count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t max_reply = PyLong_AsSsize_t(args[7]);
    if (max_reply == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (offset < 0 || offset > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "offset out of range");
        return NULL;
    }
    const char *null = protocol >= 3 ? "_\r\n" : "$-1\r\n";
    size_t null_len = protocol >= 3 ? 3 : 5;
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    Py_ssize_t pos = offset;
    Py_ssize_t count = 0;
    Py_ssize_t hits = 0;
    outbuf out = {NULL, 0, 0};
    int failed = 0;

    while (count < max_count && (Py_ssize_t)out.used < max_reply) {
        /* "*2\r\n$3\r\nGET\r\n$" is 14 bytes; the shortest request is 19. */
        if (n - pos < 19) {
            break;
        }
        const unsigned char *p = buf + pos;
        if (memcmp(p, "*2\r\n$3\r\n", 8) != 0 || !is_get(p + 8) ||
            memcmp(p + 11, "\r\n$", 3) != 0) {
            break;
        }
        Py_ssize_t i = pos + 14; /* first digit of the key length */
        Py_ssize_t klen = 0;
        Py_ssize_t digits = 0;
        while (i < n && buf[i] >= '0' && buf[i] <= '9' && digits < MAX_DIGITS) {
            klen = klen * 10 + (buf[i] - '0');
            i++;
            digits++;
        }
        if (digits == 0 || (digits > 1 && buf[pos + 14] == '0')) {
            break; /* not canonical: the parser decides */
        }
        if (i + 1 >= n || buf[i] != '\r' || buf[i + 1] != '\n') {
            break; /* incomplete, or not a plain line end */
        }
        if (klen > max_key) {
            break;
        }
        Py_ssize_t start = i + 2;
        if (n - start < klen + 2) {
            break; /* the key is not all there yet */
        }
        if (buf[start + klen] != '\r' || buf[start + klen + 1] != '\n') {
            break;
        }
        PyObject *key = PyBytes_FromStringAndSize((const char *)buf + start, klen);
        if (key == NULL) {
            failed = 1;
            break;
        }
        int stop = 0;
        PyObject *value = lookup(shards, key, now, &stop);
        if (value == NULL) {
            Py_DECREF(key);
            if (!stop) {
                failed = 1;
            }
            break;
        }
        if (value == Py_None) {
            if (out_reserve(&out, null_len) < 0) {
                Py_DECREF(key);
                failed = 1;
                break;
            }
            memcpy(out.data + out.used, null, null_len);
            out.used += null_len;
        }
        else {
            Py_ssize_t vlen = PyBytes_GET_SIZE(value);
            if (out_reserve(&out, (size_t)vlen + 32) < 0) {
                Py_DECREF(key);
                failed = 1;
                break;
            }
            int head = snprintf(out.data + out.used, 32, "$%zd\r\n", vlen);
            out.used += (size_t)head;
            memcpy(out.data + out.used, PyBytes_AS_STRING(value), (size_t)vlen);
            out.used += (size_t)vlen;
            out.data[out.used++] = '\r';
            out.data[out.used++] = '\n';
            hits++;
        }
        Py_DECREF(key);
        pos = start + klen + 2;
        count++;
    }
    PyBuffer_Release(&view);
    if (failed) {
        PyMem_Free(out.data);
        return NULL;
    }
    PyObject *reply = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.used);
    PyMem_Free(out.data);
    if (reply == NULL) {
        return NULL;
    }
    return Py_BuildValue("(nNnn)", pos - offset, reply, count, hits);
}

static int is_set(const unsigned char *p)
{
    return (p[0] == 'S' && p[1] == 'E' && p[2] == 'T') ||
           (p[0] == 's' && p[1] == 'e' && p[2] == 't') ||
           (p[0] == 'S' && p[1] == 'e' && p[2] == 't');
}

/* Parse "$<len>\r\n<bytes>\r\n" at *pos (canonical length, at most max_len):
 * the bytes' offset, their length in *len, *pos moved past them; -1 if not. */
static Py_ssize_t bulk_at(const unsigned char *buf, Py_ssize_t n, Py_ssize_t *pos,
                          Py_ssize_t max_len, Py_ssize_t *len)
{
    Py_ssize_t i = *pos;
    if (i >= n || buf[i] != '$') {
        return -1;
    }
    i++;
    Py_ssize_t first = i;
    Py_ssize_t value = 0;
    while (i < n && buf[i] >= '0' && buf[i] <= '9' && i - first < MAX_DIGITS) {
        value = value * 10 + (buf[i] - '0');
        i++;
    }
    if (i == first || (i - first > 1 && buf[first] == '0') || value > max_len) {
        return -1;
    }
    if (i + 1 >= n || buf[i] != '\r' || buf[i + 1] != '\n') {
        return -1;
    }
    Py_ssize_t start = i + 2;
    if (value > n - start - 2 || buf[start + value] != '\r' || buf[start + value + 1] != '\n') {
        return -1; /* the bytes and their CRLF are not all there */
    }
    *len = value;
    *pos = start + value + 2;
    return start;
}

static PyObject *getrun_set_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_request() takes exactly 2 arguments");
        return NULL;
    }
    Py_ssize_t max_bulk = PyLong_AsSsize_t(args[1]);
    if (max_bulk == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    Py_ssize_t pos = 13; /* after "*3\r\n$3\r\nSET\r\n" */
    Py_ssize_t klen = 0, vlen = 0, kstart = -1, vstart = -1;
    if (n >= 13 && memcmp(buf, "*3\r\n$3\r\n", 8) == 0 && is_set(buf + 8) &&
        buf[11] == '\r' && buf[12] == '\n') {
        kstart = bulk_at(buf, n, &pos, max_bulk, &klen);
        if (kstart >= 0) {
            vstart = bulk_at(buf, n, &pos, max_bulk, &vlen);
        }
    }
    PyObject *result;
    if (vstart < 0 || pos != n) {
        result = Py_NewRef(Py_None);
    } else {
        result = Py_BuildValue("(y#y#)", (const char *)buf + kstart, klen,
                               (const char *)buf + vstart, vlen);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef getrun_methods[] = {
    {"set_request", (PyCFunction)(void (*)(void))getrun_set_request, METH_FASTCALL,
     "set_request(data, max_bulk) -> (key, value) | None"},
    {"get_run", (PyCFunction)(void (*)(void))getrun_get_run, METH_FASTCALL,
     "get_run(data, offset, shards, now_ms, protocol, max_key, max_count, max_reply)"
     " -> (consumed, reply, count, hits)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef getrun_module = {
    PyModuleDef_HEAD_INIT, "_getrun", "Serve runs of plain GET requests from the input bytes.",
    0, getrun_methods,
};

PyMODINIT_FUNC PyInit__getrun(void)
{
    return PyModule_Create(&getrun_module);
}
