/*
 * Accelerated inner loops of the MCRS body codec (crema.checkpoint._mcrs).
 *
 * Optional: crema.checkpoint.format falls back to pure Python when this module
 * is not built, and the test suite runs every codec test on both paths.
 *
 * parse(buf, pos, remaining, live_after, cls) -> (entries, pos, seen, need)
 *     Decode up to `remaining` complete entries from `buf` starting at `pos`.
 *     Entries are instances of `cls` (a tuple subclass: SnapshotEntry) built
 *     as (key, value, expiry_ms or None). When live_after >= 0, entries whose
 *     non-zero expiry is <= live_after are checked but left out. Stops at the
 *     first incomplete entry; `need` is then the buffer length that entry
 *     requires (so the caller can tell a length that runs past the body), or 0
 *     when it stopped for lack of even a length field or because `remaining`
 *     entries were read. Nothing is allocated according to a length field.
 *
 * walk(buf, pos, remaining) -> (pos, seen, need)
 *     The same structural walk without building anything.
 *
 * encode(items) -> bytes | None
 *     Encode a list of (key: bytes, value: bytes, expiry: int | None) tuples
 *     (tuple subclasses included). Returns None, without raising, when any
 *     item is of another shape, so that the caller's pure-Python path can
 *     normalise or reject it with the right error.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t rd32(const unsigned char *p)
{
    return (uint64_t)p[0] | ((uint64_t)p[1] << 8) | ((uint64_t)p[2] << 16) |
           ((uint64_t)p[3] << 24);
}

static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static inline void wr32(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static inline void wr64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* One entry object of type `cls` holding (key, value, expiry); steals nothing. */
static PyObject *make_entry(PyTypeObject *cls, const unsigned char *key, uint64_t klen,
                            const unsigned char *value, uint64_t vlen, uint64_t expiry)
{
    PyObject *k = PyBytes_FromStringAndSize((const char *)key, (Py_ssize_t)klen);
    if (k == NULL) {
        return NULL;
    }
    PyObject *v = PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)vlen);
    if (v == NULL) {
        Py_DECREF(k);
        return NULL;
    }
    PyObject *e;
    if (expiry == 0) {
        e = Py_NewRef(Py_None);
    } else {
        e = PyLong_FromUnsignedLongLong(expiry);
        if (e == NULL) {
            Py_DECREF(k);
            Py_DECREF(v);
            return NULL;
        }
    }
    /* Items exist before the container, so a GC pass during these
       allocations never sees a half-filled tuple. */
    PyObject *entry = cls->tp_alloc(cls, 3);
    if (entry == NULL) {
        Py_DECREF(k);
        Py_DECREF(v);
        Py_DECREF(e);
        return NULL;
    }
    PyTuple_SET_ITEM(entry, 0, k);
    PyTuple_SET_ITEM(entry, 1, v);
    PyTuple_SET_ITEM(entry, 2, e);
    /* Bytes, ints and None cannot form a cycle: the collector need never
       look at this tuple (CPython untracks such tuples itself, but only
       after traversing them once, which costs a pass over every entry). */
    if (PyObject_GC_IsTracked(entry)) {
        PyObject_GC_UnTrack(entry);
    }
    return entry;
}

static PyObject *mcrs_parse(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    unsigned long long remaining;
    long long live_after;
    PyObject *cls_obj;
    if (!PyArg_ParseTuple(args, "y*nKLO", &view, &pos, &remaining, &live_after, &cls_obj)) {
        return NULL;
    }
    PyObject *out = NULL;
    if (!PyType_Check(cls_obj) ||
        !PyType_IsSubtype((PyTypeObject *)cls_obj, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a tuple subclass");
        goto done;
    }
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL) {
        goto done;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    uint64_t end = (uint64_t)view.len;
    uint64_t p = (uint64_t)pos;
    uint64_t seen = 0;
    uint64_t need = 0;
    while (seen < remaining && p + 4 <= end) {
        uint64_t klen = rd32(buf + p);
        uint64_t kend = p + 4 + klen;
        if (kend + 4 > end) {
            need = kend + 12;
            break;
        }
        uint64_t vlen = rd32(buf + kend);
        uint64_t vend = kend + 4 + vlen;
        if (vend + 8 > end) {
            need = vend + 8;
            break;
        }
        uint64_t expiry = rd64(buf + vend);
        if (expiry == 0 || live_after < 0 || expiry > (uint64_t)live_after) {
            PyObject *entry = make_entry((PyTypeObject *)cls_obj, buf + p + 4, klen,
                                         buf + kend + 4, vlen, expiry);
            if (entry == NULL || PyList_Append(out, entry) < 0) {
                Py_XDECREF(entry);
                Py_CLEAR(out);
                goto done;
            }
            Py_DECREF(entry);
        }
        p = vend + 8;
        seen++;
    }
    PyObject *result = Py_BuildValue("(NnKK)", out, (Py_ssize_t)p, (unsigned long long)seen,
                                     (unsigned long long)need);
    out = result;
done:
    PyBuffer_Release(&view);
    return out;
}

static PyObject *mcrs_walk(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos;
    unsigned long long remaining;
    if (!PyArg_ParseTuple(args, "y*nK", &view, &pos, &remaining)) {
        return NULL;
    }
    if (pos < 0 || pos > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)view.buf;
    uint64_t end = (uint64_t)view.len;
    uint64_t p = (uint64_t)pos;
    uint64_t seen = 0;
    uint64_t need = 0;
    while (seen < remaining && p + 4 <= end) {
        uint64_t kend = p + 4 + rd32(buf + p);
        if (kend + 4 > end) {
            need = kend + 12;
            break;
        }
        uint64_t vend = kend + 4 + rd32(buf + kend);
        if (vend + 8 > end) {
            need = vend + 8;
            break;
        }
        p = vend + 8;
        seen++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nKK)", (Py_ssize_t)p, (unsigned long long)seen,
                         (unsigned long long)need);
}

/* Size of one item when it has the fast shape, else -1 (no exception set). */
static Py_ssize_t item_size(PyObject *item, uint64_t *expiry)
{
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
        return -1;
    }
    PyObject *k = PyTuple_GET_ITEM(item, 0);
    PyObject *v = PyTuple_GET_ITEM(item, 1);
    PyObject *e = PyTuple_GET_ITEM(item, 2);
    if (!PyBytes_CheckExact(k) || !PyBytes_CheckExact(v)) {
        return -1;
    }
    if (PyBytes_GET_SIZE(k) > 0xFFFFFFFFLL || PyBytes_GET_SIZE(v) > 0xFFFFFFFFLL) {
        return -1;
    }
    if (e == Py_None) {
        *expiry = 0;
    } else if (PyLong_CheckExact(e)) {
        unsigned long long value = PyLong_AsUnsignedLongLong(e);
        if (value == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear(); /* negative or beyond u64: the Python path reports it */
            return -1;
        }
        *expiry = value;
    } else {
        return -1;
    }
    return PyBytes_GET_SIZE(k) + PyBytes_GET_SIZE(v) + 16;
}

static PyObject *mcrs_encode(PyObject *self, PyObject *items)
{
    if (!PyList_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "encode() takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    Py_ssize_t total = 0;
    uint64_t expiry;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size = item_size(PyList_GET_ITEM(items, i), &expiry);
        if (size < 0) {
            Py_RETURN_NONE;
        }
        total += size;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        item_size(item, &expiry);
        PyObject *k = PyTuple_GET_ITEM(item, 0);
        PyObject *v = PyTuple_GET_ITEM(item, 1);
        Py_ssize_t klen = PyBytes_GET_SIZE(k);
        Py_ssize_t vlen = PyBytes_GET_SIZE(v);
        wr32(w, (uint64_t)klen);
        memcpy(w + 4, PyBytes_AS_STRING(k), (size_t)klen);
        w += 4 + klen;
        wr32(w, (uint64_t)vlen);
        memcpy(w + 4, PyBytes_AS_STRING(v), (size_t)vlen);
        w += 4 + vlen;
        wr64(w, expiry);
        w += 8;
    }
    return out;
}

static PyMethodDef mcrs_methods[] = {
    {"parse", mcrs_parse, METH_VARARGS, "Decode complete entries from a plain-body buffer."},
    {"walk", mcrs_walk, METH_VARARGS, "Check the structure of complete entries."},
    {"encode", mcrs_encode, METH_O, "Encode a list of (key, value, expiry) tuples."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mcrs_module = {
    PyModuleDef_HEAD_INIT, "_mcrs", "Accelerated MCRS body codec.", -1, mcrs_methods,
};

PyMODINIT_FUNC PyInit__mcrs(void)
{
    return PyModule_Create(&mcrs_module);
}
