/* kernels._host: the triton implementation's per-call host steps in C, for the cold host.

   Between two calls a pipeline's other work leaves the CPU's caches (and, on a virtual machine, often the CPU
   itself) cold, and every interpreted step of a call then costs 1.5-5x as much as back to back
   (docs/TRITON.md). These are the steps that ran as many small Python-level operations per call:

   - masks: an RleMask per string of the pinned result buffer (bytes copies of its slices), from the
     (begin, end) int64 pairs the GPU wrote, without a memoryview, slice or tuple of ints per string;
   - call_words: the argument block's per-call head (the sequence number, each input tensor's address and
     strides, the scalars, the buffers) in one call; the tensors' methods through their descriptors
     (tensor_methods) rather than an attribute lookup per call;
   - graph_launch: cuGraphLaunch through its address, without ctypes' argument conversion and GIL release.

   kernels/triton_postprocess.py uses them where this module was built, and its Python steps elsewhere; the
   tests check both give the same objects. Every offset is checked against the buffer's length. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *str_data_ptr, *str_stride;
static PyObject *data_ptr_fn, *stride_fn; /* tensor_methods: the methods' descriptors, called without a lookup */

/* An int64 read at any byte offset (the pinned buffer's words are aligned, a test's copy need not be). */
static int64_t load_i64(const char *at) {
    int64_t value;
    memcpy(&value, at, sizeof value);
    return value;
}

/* masks(size, buffer, at, count, rle_type) -> list of rle_type(size, bytes): count (begin, end) int64 pairs at
   byte offset `at` of buffer, each the byte offsets of one string in the same buffer. */
static PyObject *masks(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "masks(size, buffer, at, count, rle_type) takes 5 arguments");
        return NULL;
    }
    PyObject *size = args[0], *rle_type = args[4];
    Py_ssize_t at = PyLong_AsSsize_t(args[2]);
    if (at == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t count = PyLong_AsSsize_t(args[3]);
    if (count == -1 && PyErr_Occurred()) return NULL;
    if (!PyType_Check(rle_type) || !PyType_IsSubtype((PyTypeObject *)rle_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "masks: rle_type must be a tuple subclass (RleMask)");
        return NULL;
    }
    allocfunc make = ((PyTypeObject *)rle_type)->tp_alloc;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = NULL;
    const char *base = (const char *)view.buf;
    Py_ssize_t length = view.len;
    if (count < 0 || at < 0 || count > (length - at) / 16 || at > length) {
        PyErr_Format(PyExc_ValueError, "masks: %zd spans at byte %zd run past the buffer's %zd bytes", count, at,
                     length);
        goto done;
    }
    out = PyList_New(count);
    if (out == NULL) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t begin = load_i64(base + at + 16 * i), end = load_i64(base + at + 16 * i + 8);
        if (begin < 0 || end < begin || end > length) {
            PyErr_Format(PyExc_ValueError, "masks: string %zd spans bytes [%lld, %lld) of a %zd-byte buffer", i,
                         (long long)begin, (long long)end, length);
            Py_CLEAR(out);
            goto done;
        }
        PyObject *counts = PyBytes_FromStringAndSize(base + begin, (Py_ssize_t)(end - begin));
        /* the pair made in place, as tuple.__new__(rle_type, (size, counts)) makes it (no argument tuples) */
        PyObject *mask = counts == NULL ? NULL : make((PyTypeObject *)rle_type, 2);
        if (mask == NULL) {
            Py_XDECREF(counts);
            Py_CLEAR(out);
            goto done;
        }
        Py_INCREF(size);
        PyTuple_SET_ITEM(mask, 0, size);
        PyTuple_SET_ITEM(mask, 1, counts);
        PyList_SET_ITEM(out, i, mask);
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* tensor(method)(): through the descriptor given to tensor_methods, else by name (an attribute lookup, which on a
   cold host costs more than the call). */
static PyObject *call_method(PyObject *function, PyObject *name, PyObject *tensor) {
    if (function != NULL) return PyObject_Vectorcall(function, &tensor, 1, NULL);
    return PyObject_VectorcallMethod(name, &tensor, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* tensor_methods(data_ptr, stride) -> None: the callables call_words calls with each tensor as their argument
   (torch.Tensor.data_ptr and torch.Tensor.stride, method descriptors); None for lookups by name. */
static PyObject *tensor_methods(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "tensor_methods(data_ptr, stride) takes 2 arguments");
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (args[i] != Py_None && !PyCallable_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "tensor_methods: data_ptr and stride must be callables or None");
            return NULL;
        }
    }
    Py_XSETREF(data_ptr_fn, args[0] == Py_None ? NULL : Py_NewRef(args[0]));
    Py_XSETREF(stride_fn, args[1] == Py_None ? NULL : Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* Writes the tensor's address and strides at word `at` of base (words long), after checking that it has
   ndim_expected dimensions and that its ndim + 1 words fit. 0, or -1 with an exception set. */
static int write_tensor(char *base, Py_ssize_t words, Py_ssize_t at, PyObject *tensor, Py_ssize_t ndim_expected) {
    PyObject *address = call_method(data_ptr_fn, str_data_ptr, tensor);
    if (address == NULL) return -1;
    int64_t value = PyLong_AsLongLong(address);
    Py_DECREF(address);
    if (value == -1 && PyErr_Occurred()) return -1;
    PyObject *strides = call_method(stride_fn, str_stride, tensor);
    if (strides == NULL) return -1;
    if (!PyTuple_Check(strides)) {
        Py_DECREF(strides);
        PyErr_SetString(PyExc_TypeError, "stride() did not return a tuple");
        return -1;
    }
    Py_ssize_t ndim = PyTuple_GET_SIZE(strides);
    if (ndim != ndim_expected || at < 0 || at > words - 1 - ndim) {
        Py_DECREF(strides);
        if (ndim != ndim_expected)
            PyErr_Format(PyExc_ValueError, "a tensor of %zd dimensions where %zd were expected", ndim, ndim_expected);
        else
            PyErr_Format(PyExc_ValueError, "%zd words at word %zd run past the block's %zd", ndim + 1, at, words);
        return -1;
    }
    memcpy(base + 8 * at, &value, 8);
    for (Py_ssize_t d = 0; d < ndim; d++) {
        int64_t stride = PyLong_AsLongLong(PyTuple_GET_ITEM(strides, d));
        if (stride == -1 && PyErr_Occurred()) {
            Py_DECREF(strides);
            return -1;
        }
        memcpy(base + 8 * (at + 1 + d), &stride, 8);
    }
    Py_DECREF(strides);
    return 0;
}

/* The argument block's per-call head (kernels/triton_layout.py), in word order: the sequence number, the logits,
   boxes and masks (address + 3, 3, 4 strides), thresholds (address, K), mapping (address, M), classes, max
   detections, then the five buffer words (workspace address and words, result address and bytes, host twin). */
enum { HEAD_SCALARS = 6, HEAD_BUFFERS = 5, HEAD_WORDS = 1 + 4 + 4 + 5 + HEAD_SCALARS + HEAD_BUFFERS };

/* call_words(words, seq, logits, boxes, masks, thr, k, mapping, m, classes, max_det, buffers) -> None: the head
   of the argument block (HEAD_WORDS int64 words from word 0) in one call; buffers a tuple of five ints. */
static PyObject *call_words(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError,
                        "call_words(words, seq, logits, boxes, masks, thr, k, mapping, m, classes, max_det, buffers) "
                        "takes 12 arguments");
        return NULL;
    }
    PyObject *buffers = args[11];
    if (!PyTuple_Check(buffers) || PyTuple_GET_SIZE(buffers) != HEAD_BUFFERS) {
        PyErr_SetString(PyExc_TypeError, "call_words: buffers must be a tuple of five ints");
        return NULL;
    }
    int64_t head[1 + HEAD_SCALARS + HEAD_BUFFERS];
    for (int i = 0; i < 1 + HEAD_SCALARS + HEAD_BUFFERS; i++) {
        PyObject *value = i == 0 ? args[1] : i <= HEAD_SCALARS ? args[4 + i] : PyTuple_GET_ITEM(buffers, i - 1 - HEAD_SCALARS);
        head[i] = PyLong_AsLongLong(value);
        if (head[i] == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) return NULL;
    char *base = (char *)view.buf;
    Py_ssize_t words = view.len / 8;
    PyObject *result = NULL;
    if (words < HEAD_WORDS) {
        PyErr_Format(PyExc_ValueError, "call_words: a block of %zd words has no room for the %d of the head", words,
                     (int)HEAD_WORDS);
        goto done;
    }
    if (write_tensor(base, words, 1, args[2], 3) < 0 || write_tensor(base, words, 5, args[3], 3) < 0 ||
        write_tensor(base, words, 9, args[4], 4) < 0)
        goto done;
    memcpy(base, head, 8);
    memcpy(base + 8 * 14, head + 1, 8 * (HEAD_SCALARS + HEAD_BUFFERS));
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&view);
    return result;
}

typedef int (*graph_launch_fn)(void *exec, void *stream);

/* graph_launch(function, exec, stream) -> int: cuGraphLaunch(exec, stream) called through its address (from
   ctypes), the driver's CUresult back. */
static PyObject *graph_launch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "graph_launch(function, exec, stream) takes 3 arguments");
        return NULL;
    }
    unsigned long long function = PyLong_AsUnsignedLongLong(args[0]);
    if (function == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (function == 0) {
        PyErr_SetString(PyExc_ValueError, "graph_launch: no function address");
        return NULL;
    }
    void *exec = PyLong_AsVoidPtr(args[1]);
    if (exec == NULL && PyErr_Occurred()) return NULL;
    void *stream = PyLong_AsVoidPtr(args[2]);
    if (stream == NULL && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(((graph_launch_fn)(uintptr_t)function)(exec, stream));
}

static PyMethodDef methods[] = {
    {"masks", (PyCFunction)(void (*)(void))masks, METH_FASTCALL,
     "masks(size, buffer, at, count, rle_type) -> list: rle_type(size, bytes) per (begin, end) int64 pair at `at`"},
    {"tensor_methods", (PyCFunction)(void (*)(void))tensor_methods, METH_FASTCALL,
     "tensor_methods(data_ptr, stride): the callables call_words calls with each tensor (None: by name)"},
    {"call_words", (PyCFunction)(void (*)(void))call_words, METH_FASTCALL,
     "call_words(words, seq, logits, boxes, masks, thr, k, mapping, m, classes, max_det, buffers): the block's head"},
    {"graph_launch", (PyCFunction)(void (*)(void))graph_launch, METH_FASTCALL,
     "graph_launch(function, exec, stream) -> int: cuGraphLaunch through its address"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_host", "The triton implementation's host steps in C.",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__host(void) {
    str_data_ptr = PyUnicode_InternFromString("data_ptr");
    str_stride = PyUnicode_InternFromString("stride");
    if (str_data_ptr == NULL || str_stride == NULL) return NULL;
    return PyModule_Create(&module);
}
