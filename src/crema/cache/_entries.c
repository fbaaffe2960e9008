/*
 * Store entries the cyclic garbage collector never looks at (crema.cache._entries).
 *
 * Optional: crema.cache.store falls back to plain tuples when this module is
 * not built; results are identical, only full GC passes are slower.
 *
 * A stored entry is a 3-tuple (value: bytes, expiry: int | None, seq: int).
 * Such a tuple can never be part of a reference cycle, but CPython creates
 * every tuple tracked by the collector and untracks it only when a collection
 * examines it. Worse, a dict stays tracked while it holds a tracked value, so
 * each fresh entry re-tracks its shard dict, and every full collection then
 * walks all the shards (one cache miss per entry: hundreds of ms at a million
 * entries). Entries made here are untracked from birth, so the shard dicts
 * stay untracked too.
 *
 * entry(value, expiry, seq) -> tuple
 *     The untracked tuple (value, expiry, seq). No type checks: the store's
 *     callers pass bytes, int-or-None, int.
 *
 * fill(entries, shards, mask, blocks, bits, heap, seq, cls) -> (done, seq, nbytes, status)
 *     Insert snapshot entries (a list of `cls` instances, a 3-tuple subclass
 *     (key, value, expiry)) into `shards[hash(key) & mask]` as untracked
 *     entries with seq numbers seq+1, seq+2, ..., record
 *     blocks[seq >> bits][seq] = key (creating block dicts as needed) and
 *     append an untracked (expiry, key) to `heap` for each expiry. Stops at
 *     the first item it cannot take and says why in `status`: 0 all done,
 *     1 wrong types or expiry out of [1, 2**64), 2 a repeated key, 3 an item
 *     that is not a `cls` (the caller continues in Python from `done`).
 *
 * untrack_list(items) -> None
 *     Untrack a list from the GC. Only for lists that will only ever hold
 *     objects that cannot reach the list (the store's expiry heap of
 *     (int, bytes) tuples), so no cycle through it can exist.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *untracked3(PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *t = PyTuple_New(3);
    if (t == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, Py_NewRef(a));
    PyTuple_SET_ITEM(t, 1, Py_NewRef(b));
    PyTuple_SET_ITEM(t, 2, Py_NewRef(c));
    if (PyObject_GC_IsTracked(t)) {
        PyObject_GC_UnTrack(t);
    }
    return t;
}

static PyObject *entries_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "entry() takes exactly 3 arguments");
        return NULL;
    }
    return untracked3(args[0], args[1], args[2]);
}

static PyObject *untracked2(PyObject *a, PyObject *b)
{
    PyObject *t = PyTuple_New(2);
    if (t == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, Py_NewRef(a));
    PyTuple_SET_ITEM(t, 1, Py_NewRef(b));
    if (PyObject_GC_IsTracked(t)) {
        PyObject_GC_UnTrack(t);
    }
    return t;
}

/* 0: fine; 1: not (bytes, bytes, None | int in [1, 2**64)). */
static int bad_item(PyObject *key, PyObject *value, PyObject *expiry)
{
    if (!PyBytes_CheckExact(key) || !PyBytes_CheckExact(value)) {
        return 1;
    }
    if (expiry == Py_None) {
        return 0;
    }
    if (!PyLong_CheckExact(expiry)) {
        return 1;
    }
    unsigned long long ms = PyLong_AsUnsignedLongLong(expiry);
    if (ms == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear(); /* negative or too large */
        return 1;
    }
    return ms == 0;
}

/* Insert one checked item; -1 on a Python error, 2 on a repeated key, else 0. */
static int insert(PyObject *key, PyObject *value, PyObject *expiry, PyObject *shards,
                  size_t mask, PyObject *order, PyObject *heap, long long seq)
{
    Py_hash_t h = PyObject_Hash(key);
    if (h == -1) {
        return -1;
    }
    PyObject *shard = PyList_GET_ITEM(shards, (Py_ssize_t)((size_t)h & mask));
    PyObject *seq_obj = PyLong_FromLongLong(seq);
    if (seq_obj == NULL) {
        return -1;
    }
    PyObject *entry = untracked3(value, expiry, seq_obj);
    if (entry == NULL) {
        Py_DECREF(seq_obj);
        return -1;
    }
    /* One lookup: insert unless present, and tell which happened. */
    PyObject *stored = PyDict_SetDefault(shard, key, entry);
    int rc = stored == NULL ? -1 : (stored != entry ? 2 : 0);
    Py_DECREF(entry);
    if (rc == 0) {
        rc = PyDict_SetItem(order, seq_obj, key);
    }
    Py_DECREF(seq_obj);
    if (rc == 2) {
        return 2;
    }
    if (rc == 0 && expiry != Py_None) {
        PyObject *item = untracked2(expiry, key);
        rc = item == NULL ? -1 : PyList_Append(heap, item);
        Py_XDECREF(item);
    }
    return rc < 0 ? -1 : 0;
}

/* blocks[no], created empty if missing (borrowed), or NULL on error. */
static PyObject *block_for(PyObject *blocks, long long no)
{
    PyObject *key = PyLong_FromLongLong(no);
    if (key == NULL) {
        return NULL;
    }
    PyObject *fresh = PyDict_New();
    PyObject *block = fresh == NULL ? NULL : PyDict_SetDefault(blocks, key, fresh);
    Py_DECREF(key);
    Py_XDECREF(fresh); /* blocks holds a reference to whichever dict is stored */
    if (block != NULL && !PyDict_CheckExact(block)) {
        PyErr_SetString(PyExc_TypeError, "blocks must map ints to dicts");
        return NULL;
    }
    return block;
}

static PyObject *entries_untrack_list(PyObject *self, PyObject *items)
{
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "untrack_list() takes a list");
        return NULL;
    }
    if (PyObject_GC_IsTracked(items)) {
        PyObject_GC_UnTrack(items);
    }
    Py_RETURN_NONE;
}

static PyObject *entries_fill(PyObject *self, PyObject *args)
{
    PyObject *entries, *shards, *blocks, *heap, *cls;
    Py_ssize_t mask;
    int bits;
    long long seq;
    if (!PyArg_ParseTuple(args, "O!O!nO!iO!LO", &PyList_Type, &entries, &PyList_Type, &shards,
                          &mask, &PyDict_Type, &blocks, &bits, &PyList_Type, &heap, &seq, &cls)) {
        return NULL;
    }
    if (bits < 1 || bits > 40 || seq < 0) {
        PyErr_SetString(PyExc_ValueError, "bits must be in [1, 40] and seq >= 0");
        return NULL;
    }
    long long block_no = -1;
    PyObject *order = NULL; /* borrowed: blocks[block_no] */
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a tuple subclass");
        return NULL;
    }
    Py_ssize_t nshards = PyList_GET_SIZE(shards);
    if (mask < 0 || mask + 1 != nshards || (nshards & mask) != 0) {
        PyErr_SetString(PyExc_ValueError, "shards must be a list of 2**k dicts, mask 2**k - 1");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nshards; i++) {
        if (!PyDict_CheckExact(PyList_GET_ITEM(shards, i))) {
            PyErr_SetString(PyExc_TypeError, "shards must be dicts");
            return NULL;
        }
    }
    long long nbytes = 0;
    int status = 0;
    Py_ssize_t i = 0;
    for (; i < PyList_GET_SIZE(entries); i++) {
        PyObject *item = PyList_GET_ITEM(entries, i);
        if ((PyObject *)Py_TYPE(item) != cls || PyTuple_GET_SIZE(item) != 3) {
            status = 3;
            break;
        }
        PyObject *key = PyTuple_GET_ITEM(item, 0);
        PyObject *value = PyTuple_GET_ITEM(item, 1);
        PyObject *expiry = PyTuple_GET_ITEM(item, 2);
        if (bad_item(key, value, expiry)) {
            status = 1;
            break;
        }
        if (((seq + 1) >> bits) != block_no) {
            block_no = (seq + 1) >> bits;
            order = block_for(blocks, block_no);
            if (order == NULL) {
                return NULL;
            }
        }
        status = insert(key, value, expiry, shards, (size_t)mask, order, heap, seq + 1);
        if (status < 0) {
            return NULL;
        }
        if (status) {
            break;
        }
        seq++;
        nbytes += PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value);
    }
    return Py_BuildValue("(nLLi)", i, seq, nbytes, status);
}

static PyMethodDef entries_methods[] = {
    {"entry", (PyCFunction)(void (*)(void))entries_entry, METH_FASTCALL,
     "The untracked tuple (value, expiry, seq)."},
    {"fill", entries_fill, METH_VARARGS, "Insert snapshot entries into the store's tables."},
    {"untrack_list", entries_untrack_list, METH_O, "Untrack a list of acyclic items."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef entries_module = {
    PyModuleDef_HEAD_INIT, "_entries", "Store entries the cyclic GC never tracks.", -1,
    entries_methods,
};

PyMODINIT_FUNC PyInit__entries(void)
{
    return PyModule_Create(&entries_module);
}
