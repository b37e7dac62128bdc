/* The ring's three ordered accesses, as C11 atomics.
 *
 * Python cannot express acquire or release: on x86-64 its plain aligned 8-byte stores and
 * loads happen to be ordered enough (TSO), on ARM and other weakly ordered CPUs they are not.
 * These three functions are the seqlock's ordering points (docs/ring.md, "Memory ordering");
 * the compiler emits for each what the CPU needs: a plain MOV on x86-64, DMB/STLR/LDAR on
 * aarch64.
 *
 * Each takes the address of an aligned 8-byte word in a shared mapping. The Python side
 * (order.py) computes the addresses once from the mapping it owns, so no call here ever
 * sees an address it did not make.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>

static int
word_of(PyObject *arg, _Atomic int64_t **word)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL && PyErr_Occurred())
        return -1;
    if (p == NULL || ((uintptr_t)p & 7) != 0) {
        PyErr_SetString(PyExc_ValueError, "not the address of an aligned 8-byte word");
        return -1;
    }
    *word = (_Atomic int64_t *)p;
    return 0;
}

/* The (address, value) of a store, from a fast call's arguments; -1 with an exception set. */
static int
store_args(PyObject *const *args, Py_ssize_t nargs, const char *usage,
           _Atomic int64_t **word, int64_t *value)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (word_of(args[0], word) < 0)
        return -1;
    *value = PyLong_AsLongLong(args[1]);
    if (*value == -1 && PyErr_Occurred())
        return -1;
    return 0;
}

/* begin(address, value): the writer marks a slot as being written. The odd stamp must be
 * visible before any pixel store that follows: a relaxed store, then a release fence
 * (which C11 and every CPU model make a store-store barrier for the later plain stores). */
static PyObject *
order_begin(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    _Atomic int64_t *word;
    int64_t value;
    if (store_args(args, nargs, "begin(address, value)", &word, &value) < 0)
        return NULL;
    atomic_store_explicit(word, value, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    Py_RETURN_NONE;
}

/* publish(address, value): a store-release. Everything written before it (the pixels,
 * the slot's seq, pts and timestamp; the stamp before the head) is visible to a reader
 * that reads this word with load(). */
static PyObject *
order_publish(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    _Atomic int64_t *word;
    int64_t value;
    if (store_args(args, nargs, "publish(address, value)", &word, &value) < 0)
        return NULL;
    atomic_store_explicit(word, value, memory_order_release);
    Py_RETURN_NONE;
}

/* load(address): an acquire fence, then a load-acquire. The fence keeps every earlier
 * read (the pixels a reader copied) before this load, so a stamp that reads the same
 * after a copy as before proves the copy whole; the acquire keeps every later read
 * after it. One function serves the check before a read and the check after it. */
static PyObject *
order_load(PyObject *self, PyObject *arg)
{
    _Atomic int64_t *word;
    if (word_of(arg, &word) < 0)
        return NULL;
    atomic_thread_fence(memory_order_acquire);
    return PyLong_FromLongLong(atomic_load_explicit(word, memory_order_acquire));
}

static PyMethodDef order_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))order_begin, METH_FASTCALL,
     "begin(address, value): relaxed store, then a fence before the stores that follow"},
    {"publish", (PyCFunction)(void (*)(void))order_publish, METH_FASTCALL,
     "publish(address, value): store-release"},
    {"load", order_load, METH_O, "load(address): acquire fence, then load-acquire"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef order_module = {
    PyModuleDef_HEAD_INIT, "_order",
    "The ring's ordered 8-byte accesses (C11 atomics); see framebus/shm/order.py.",
    -1, order_methods,
};

PyMODINIT_FUNC
PyInit__order(void)
{
    return PyModule_Create(&order_module);
}
