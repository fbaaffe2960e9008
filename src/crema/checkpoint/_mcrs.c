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
 *
 * ShardMerge(tables) -> merger; merger.encode(max_entries, max_bytes) -> bytes
 *     Encode the entries of a store view in write order, a slice at a time.
 *     `tables` is a tuple of dicts key -> (value, expiry | None, seq), each
 *     iterating in ascending seq (the store keeps them so). The merger walks
 *     them in step, always taking the smallest seq next (a binary heap over
 *     the tables' current heads), and each encode() call returns the encoded
 *     bytes of at most `max_entries` further entries (stopping early once
 *     `max_bytes` is reached; b"" when all are done), so a caller in a worker
 *     thread holds the GIL only briefly per call. `merger.count` is the number
 *     of entries encoded so far. The tables must not change meanwhile (the
 *     store copies a table before writing to it while a view holds it): a
 *     changed size raises RuntimeError, as do seqs that do not ascend within
 *     a table; an entry of another shape raises TypeError. Heads hold strong
 *     references, so even a misused merger never reads freed memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <limits.h>
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


/* ------------------------------------------------------------------------ */
/* ShardMerge: write-order encoding of a sharded store view                  */

typedef struct {
    PyObject *key;   /* strong */
    PyObject *entry; /* strong: (value, expiry, seq) */
    long long seq;
    Py_ssize_t table;
} Head;

typedef struct {
    PyObject_HEAD
    PyObject *tables; /* tuple of dicts */
    Py_ssize_t ntables;
    Py_ssize_t *pos;
    Py_ssize_t *sizes;
    long long *last;
    Head *heap;
    Py_ssize_t heap_len;
    Head *batch;
    Py_ssize_t batch_cap;
    unsigned long long count;
} ShardMerge;

static void head_sift_down(Head *heap, Py_ssize_t n, Py_ssize_t i)
{
    Head item = heap[i];
    for (;;) {
        Py_ssize_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && heap[child + 1].seq < heap[child].seq) {
            child++;
        }
        if (heap[child].seq >= item.seq) {
            break;
        }
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = item;
}

static void head_sift_up(Head *heap, Py_ssize_t i)
{
    Head item = heap[i];
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (heap[parent].seq <= item.seq) {
            break;
        }
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = item;
}

/* Read the next entry of table t into *out. 1: got one, 0: table done, -1: error. */
static int merge_next(ShardMerge *m, Py_ssize_t t, Head *out)
{
    PyObject *table = PyTuple_GET_ITEM(m->tables, t);
    PyObject *key, *entry;
    if (!PyDict_Next(table, &m->pos[t], &key, &entry)) {
        return 0;
    }
    if (!PyBytes_CheckExact(key) || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(entry, 2))) {
        PyErr_SetString(PyExc_TypeError, "store entries must be bytes -> (value, expiry, seq)");
        return -1;
    }
    long long seq = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 2));
    if (seq == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (seq <= m->last[t]) {
        PyErr_SetString(PyExc_RuntimeError, "a store table is not in write order");
        return -1;
    }
    m->last[t] = seq;
    out->key = Py_NewRef(key);
    out->entry = Py_NewRef(entry);
    out->seq = seq;
    out->table = t;
    return 1;
}

static void merge_clear(ShardMerge *m)
{
    if (m->heap != NULL) {
        for (Py_ssize_t i = 0; i < m->heap_len; i++) {
            Py_DECREF(m->heap[i].key);
            Py_DECREF(m->heap[i].entry);
        }
    }
    PyMem_Free(m->heap);
    PyMem_Free(m->batch);
    PyMem_Free(m->pos);
    PyMem_Free(m->sizes);
    PyMem_Free(m->last);
    m->heap = m->batch = NULL;
    m->pos = m->sizes = NULL;
    m->last = NULL;
    m->heap_len = m->batch_cap = 0;
    Py_CLEAR(m->tables);
}

static void merge_dealloc(ShardMerge *m)
{
    merge_clear(m);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static int merge_init(ShardMerge *m, PyObject *args, PyObject *kwds)
{
    PyObject *tables;
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &tables)) {
        return -1;
    }
    merge_clear(m);
    Py_ssize_t n = PyTuple_GET_SIZE(tables);
    for (Py_ssize_t t = 0; t < n; t++) {
        if (!PyDict_CheckExact(PyTuple_GET_ITEM(tables, t))) {
            PyErr_SetString(PyExc_TypeError, "ShardMerge() takes a tuple of dicts");
            return -1;
        }
    }
    m->tables = Py_NewRef(tables);
    m->ntables = n;
    m->count = 0;
    m->pos = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    m->sizes = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    m->last = PyMem_Calloc((size_t)n + 1, sizeof(long long));
    m->heap = PyMem_Calloc((size_t)n + 1, sizeof(Head));
    if (m->pos == NULL || m->sizes == NULL || m->last == NULL || m->heap == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t t = 0; t < n; t++) {
        m->sizes[t] = PyDict_GET_SIZE(PyTuple_GET_ITEM(tables, t));
        m->last[t] = LLONG_MIN;
        int got = merge_next(m, t, &m->heap[m->heap_len]);
        if (got < 0) {
            return -1;
        }
        if (got) {
            head_sift_up(m->heap, m->heap_len++);
        }
    }
    return 0;
}

static int merge_check_sizes(ShardMerge *m)
{
    for (Py_ssize_t t = 0; t < m->ntables; t++) {
        if (PyDict_GET_SIZE(PyTuple_GET_ITEM(m->tables, t)) != m->sizes[t]) {
            PyErr_SetString(PyExc_RuntimeError, "a store table changed during the merge");
            return -1;
        }
    }
    return 0;
}

/* Encoded size of a taken head, or -1 with TypeError set. */
static Py_ssize_t head_size(Head *h, uint64_t *expiry)
{
    PyObject *value = PyTuple_GET_ITEM(h->entry, 0);
    PyObject *e = PyTuple_GET_ITEM(h->entry, 1);
    if (!PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) > 0xFFFFFFFFLL ||
        PyBytes_GET_SIZE(h->key) > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_TypeError, "store values must be bytes under 4 GiB");
        return -1;
    }
    if (e == Py_None) {
        *expiry = 0;
    } else if (PyLong_CheckExact(e)) {
        unsigned long long ms = PyLong_AsUnsignedLongLong(e);
        if (ms == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        *expiry = ms;
    } else {
        PyErr_SetString(PyExc_TypeError, "store expiries must be None or int");
        return -1;
    }
    return PyBytes_GET_SIZE(h->key) + PyBytes_GET_SIZE(value) + 16;
}

static void release_batch(Head *batch, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(batch[i].key);
        Py_DECREF(batch[i].entry);
    }
}

static PyObject *merge_encode(ShardMerge *m, PyObject *args)
{
    Py_ssize_t max_entries, max_bytes;
    if (!PyArg_ParseTuple(args, "nn", &max_entries, &max_bytes)) {
        return NULL;
    }
    if (m->tables == NULL) {
        PyErr_SetString(PyExc_ValueError, "ShardMerge not initialised");
        return NULL;
    }
    if (max_entries < 1) {
        max_entries = 1;
    }
    if (merge_check_sizes(m) < 0) {
        return NULL;
    }
    if (m->batch_cap < max_entries) {
        Head *grown = PyMem_Realloc(m->batch, (size_t)max_entries * sizeof(Head));
        if (grown == NULL) {
            return PyErr_NoMemory();
        }
        m->batch = grown;
        m->batch_cap = max_entries;
    }
    /* Pass 1: take the next entries in seq order, summing their sizes. */
    Py_ssize_t n = 0, total = 0;
    uint64_t expiry;
    while (n < max_entries && m->heap_len > 0 && (n == 0 || total < max_bytes)) {
        Head top = m->heap[0];
        Py_ssize_t size = head_size(&top, &expiry);
        if (size < 0) {
            release_batch(m->batch, n);
            return NULL;
        }
        m->batch[n++] = top; /* the batch now owns top's references */
        total += size;
        int got = merge_next(m, top.table, &m->heap[0]);
        if (got < 0) {
            /* heap[0] still aliases top (owned by the batch): drop it from the heap */
            m->heap[0] = m->heap[--m->heap_len];
            if (m->heap_len > 0) {
                head_sift_down(m->heap, m->heap_len, 0);
            }
            release_batch(m->batch, n);
            return NULL;
        }
        if (!got) {
            m->heap[0] = m->heap[--m->heap_len];
        }
        if (m->heap_len > 0) {
            head_sift_down(m->heap, m->heap_len, 0);
        }
    }
    /* Pass 2: one bytes object for the slice. */
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        release_batch(m->batch, n);
        return NULL;
    }
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        Head *h = &m->batch[i];
        head_size(h, &expiry); /* checked in pass 1 */
        PyObject *value = PyTuple_GET_ITEM(h->entry, 0);
        Py_ssize_t klen = PyBytes_GET_SIZE(h->key);
        Py_ssize_t vlen = PyBytes_GET_SIZE(value);
        wr32(w, (uint64_t)klen);
        memcpy(w + 4, PyBytes_AS_STRING(h->key), (size_t)klen);
        w += 4 + klen;
        wr32(w, (uint64_t)vlen);
        memcpy(w + 4, PyBytes_AS_STRING(value), (size_t)vlen);
        w += 4 + vlen;
        wr64(w, expiry);
        w += 8;
    }
    release_batch(m->batch, n);
    m->count += (unsigned long long)n;
    return out;
}

static PyObject *merge_get_count(ShardMerge *m, void *closure)
{
    return PyLong_FromUnsignedLongLong(m->count);
}

static PyMethodDef merge_methods[] = {
    {"encode", (PyCFunction)merge_encode, METH_VARARGS,
     "encode(max_entries, max_bytes) -> the next entries, encoded (b\"\" when done)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef merge_getset[] = {
    {"count", (getter)merge_get_count, NULL, "Entries encoded so far.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ShardMergeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "crema.checkpoint._mcrs.ShardMerge",
    .tp_basicsize = sizeof(ShardMerge),
    .tp_dealloc = (destructor)merge_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Write-order encoder of a sharded store view.",
    .tp_methods = merge_methods,
    .tp_getset = merge_getset,
    .tp_init = (initproc)merge_init,
    .tp_new = PyType_GenericNew,
};

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
    if (PyType_Ready(&ShardMergeType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&mcrs_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "ShardMerge", (PyObject *)&ShardMergeType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
