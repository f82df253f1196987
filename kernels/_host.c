/* kernels._host: the triton implementation's per-call host steps in C, for the cold host.

   Between two calls a pipeline's other work leaves the CPU's caches (and, on a virtual machine, often the CPU
   itself) cold, and every interpreted step of a call then costs 1.5-5x as much as back to back
   (docs/TRITON.md). These are the steps that ran as many small Python-level operations per call:

   - masks: an RleMask per string of the pinned result buffer (bytes copies of its slices), from the
     (begin, end) int64 pairs the GPU wrote, without a memoryview, slice or tuple of ints per string;
   - call_words: the argument block's per-call head (the sequence number, each input tensor's address and
     strides, the scalars, the buffers) in one call; the tensors' methods through their descriptors
     (tensor_methods) rather than an attribute lookup per call;
   - graph_launch: cuGraphLaunch through its address, without ctypes' argument conversion and GIL release;
   - enqueue_replay: the common replayed call's whole enqueue (plan and metadata lookups, sequence number, stream,
     the argument block, the launch) in one call, where the Python steps ran ~40 bytecodes of attribute loads
     and item stores; every other call (a new plan, frame size or class, a threshold tensor, a mapping) it
     leaves to them.

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
enum {
    HEAD_SCALARS = 6,
    HEAD_BUFFERS = 5,
    SCALARS_WORD = 1 + 4 + 4 + 5, /* after the sequence number and the three tensors' words */
    HEAD_WORDS = SCALARS_WORD + HEAD_SCALARS + HEAD_BUFFERS,
};

/* The head into base (words long): the three tensors' words, then head[0] (the sequence number) at word 0 and the
   scalars and buffers (head[1..]) from SCALARS_WORD on. 0, or -1 with an exception set (a tensor's words). */
static int write_head(char *base, Py_ssize_t words, PyObject *logits, PyObject *boxes, PyObject *masks,
                      const int64_t *head) {
    if (write_tensor(base, words, 1, logits, 3) < 0 || write_tensor(base, words, 5, boxes, 3) < 0 ||
        write_tensor(base, words, 9, masks, 4) < 0)
        return -1;
    memcpy(base, head, 8);
    memcpy(base + 8 * SCALARS_WORD, head + 1, 8 * (HEAD_SCALARS + HEAD_BUFFERS));
    return 0;
}

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
        PyObject *value = i == 0              ? args[1]
                          : i <= HEAD_SCALARS ? args[4 + i]
                                              : PyTuple_GET_ITEM(buffers, i - 1 - HEAD_SCALARS);
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
    if (write_head(base, words, args[2], args[3], args[4], head) < 0) goto done;
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

/* --- replay: a replayed call's whole enqueue ------------------------------------------------------------------ */

static PyObject *pending_type, *stream_fn; /* replay_config: _Pending, torch's current-raw-stream getter */

enum { TAIL_WORD = HEAD_WORDS, FAST_FIELDS = 4 }; /* the packed tail starts where the head ends */
#define F32_LIMIT 3.4028235677973366e38 /* 2**128 - 2**103: from here on float32 rounds to infinity */

/* replay_config(pending_type, stream_fn) -> None: the _Pending tuple type enqueue_replay returns and the callable
   that gives the current raw CUDA stream of a device index. */
static PyObject *replay_config(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyType_Check(args[0]) || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type) ||
        !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "replay_config(pending_type, stream_fn): a tuple type and a callable");
        return NULL;
    }
    Py_XSETREF(pending_type, Py_NewRef(args[0]));
    Py_XSETREF(stream_fn, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* New references a call holds, dropped together at its end. */
enum { HELD_MAX = 48 };
typedef struct {
    PyObject *refs[HELD_MAX];
    int count;
} Held;

/* object, held (NULL stays NULL: the caller's exception). */
static PyObject *hold(Held *held, PyObject *object) {
    if (object == NULL) return NULL;
    if (held->count == HELD_MAX) {
        Py_DECREF(object);
        PyErr_SetString(PyExc_SystemError, "enqueue_replay: too many references held");
        return NULL;
    }
    held->refs[held->count++] = object;
    return object;
}

static void release(Held *held) {
    while (held->count > 0) Py_DECREF(held->refs[--held->count]);
}

static PyObject *str_use_cuda_graph, *str_launch_address, *str_plans, *str_seq, *str_device_index, *str_dummy_f,
    *str_dummy_i, *str_args_mv, *str_buffers, *str_args_tail, *str_replay_fallback, *str_fast, *str_metas,
    *str_graphs, *str_logits, *str_boxes, *str_masks, *str_preprocess, *str_threshold, *str_class_mapping,
    *str_max_detections, *str_num_classes, *str_shape, *str_dtype, *str_key;

/* int64 of an int attribute; -1 with an exception set where it is not one. */
static int64_t int_attr(Held *held, PyObject *object, PyObject *name) {
    PyObject *value = hold(held, PyObject_GetAttr(object, name));
    return value == NULL ? -1 : PyLong_AsLongLong(value);
}

/* enqueue_replay(impl, inputs) -> _Pending or None: TritonPostprocess.enqueue's replay of a captured graph in one
   call, for the common call (a known plan, metadata and frame class whose graph has a driver handle, a float
   threshold within float32's range, no class mapping, an int or no detection cap, at least one slot): the plan
   and metadata lookups, the sequence number, the stream, the whole argument block (the head as call_words writes
   it, the metadata tail where it differs from the last call's, the scalar threshold) and cuGraphLaunch through
   impl._launch_address. None, having changed nothing, for every other call: enqueue's Python steps take it. */
static PyObject *enqueue_replay(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "enqueue_replay(impl, inputs) takes 2 arguments");
        return NULL;
    }
    if (pending_type == NULL || stream_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "enqueue_replay: replay_config was not called");
        return NULL;
    }
    PyObject *impl = args[0], *inputs = args[1], *result = NULL;
    Held held = {.count = 0};
    Py_buffer view = {.obj = NULL};
#define NEED(x)                     \
    do {                            \
        if ((x) == NULL) goto done; \
    } while (0)
#define NOT_MINE goto not_mine
    PyObject *flag = hold(&held, PyObject_GetAttr(impl, str_use_cuda_graph));
    NEED(flag);
    int use_graph = PyObject_IsTrue(flag);
    if (use_graph < 0) goto done;
    int64_t launch_fn = int_attr(&held, impl, str_launch_address);
    if (launch_fn == -1 && PyErr_Occurred()) goto done;
    if (!use_graph || launch_fn == 0) NOT_MINE;
    PyObject *logits = hold(&held, PyObject_GetAttr(inputs, str_logits));
    NEED(logits);
    PyObject *boxes = hold(&held, PyObject_GetAttr(inputs, str_boxes));
    NEED(boxes);
    PyObject *masks = hold(&held, PyObject_GetAttr(inputs, str_masks));
    NEED(masks);
    PyObject *signature = PyTuple_New(5);
    NEED(hold(&held, signature));
    /* (logits.shape, masks.shape, logits.dtype, boxes.dtype, masks.dtype), as enqueue's Python steps key a plan */
    PyObject *owners[5] = {logits, masks, logits, boxes, masks};
    for (int i = 0; i < 5; i++) {
        PyObject *part = PyObject_GetAttr(owners[i], i < 2 ? str_shape : str_dtype);
        NEED(part); /* the tuple's items not yet set are NULL, which its deallocation skips */
        PyTuple_SET_ITEM(signature, i, part);
    }
    PyObject *plans = hold(&held, PyObject_GetAttr(impl, str_plans));
    NEED(plans);
    if (!PyDict_Check(plans)) NOT_MINE;
    PyObject *plan = PyDict_GetItemWithError(plans, signature);
    if (plan == NULL) {
        if (PyErr_Occurred()) goto done;
        NOT_MINE;
    }
    hold(&held, Py_NewRef(plan)); /* held: the Python code called below may change the dict */
    PyObject *fast = hold(&held, PyObject_GetAttr(plan, str_fast));
    NEED(fast);
    if (!PyTuple_Check(fast) || PyTuple_GET_SIZE(fast) != FAST_FIELDS) NOT_MINE;
    int64_t numbers[FAST_FIELDS]; /* slots, queries, block words, float index of the scalar threshold */
    for (int i = 0; i < FAST_FIELDS; i++) {
        numbers[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(fast, i));
        if (numbers[i] == -1 && PyErr_Occurred()) goto done;
    }
    int64_t slots = numbers[0], queries = numbers[1], block_words = numbers[2], float_index = numbers[3];
    if (slots <= 0) NOT_MINE;
    PyObject *metas = hold(&held, PyObject_GetAttr(inputs, str_preprocess));
    NEED(metas);
    if (!PyList_Check(metas) || PyList_GET_SIZE(metas) < 1) NOT_MINE;
    PyObject *key;
    if (PyList_GET_SIZE(metas) == 1) {
        key = hold(&held, PyObject_GetAttr(PyList_GET_ITEM(metas, 0), str_key));
    } else {
        Py_ssize_t n = PyList_GET_SIZE(metas), total = 0;
        PyObject *keys = hold(&held, PyTuple_New(n));
        NEED(keys);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *one = PyObject_GetAttr(PyList_GET_ITEM(metas, i), str_key);
            NEED(one);
            PyTuple_SET_ITEM(keys, i, one);
            if (!PyBytes_Check(one)) NOT_MINE;
            total += PyBytes_GET_SIZE(one);
        }
        key = hold(&held, PyBytes_FromStringAndSize(NULL, total)); /* the keys joined (they are prefix-free) */
        NEED(key);
        for (Py_ssize_t i = 0, at = 0; i < n; at += PyBytes_GET_SIZE(PyTuple_GET_ITEM(keys, i)), i++)
            memcpy(PyBytes_AS_STRING(key) + at, PyBytes_AS_STRING(PyTuple_GET_ITEM(keys, i)),
                   PyBytes_GET_SIZE(PyTuple_GET_ITEM(keys, i)));
    }
    NEED(key);
    PyObject *plan_metas = hold(&held, PyObject_GetAttr(plan, str_metas));
    NEED(plan_metas);
    if (!PyDict_Check(plan_metas)) NOT_MINE;
    PyObject *meta = PyDict_GetItemWithError(plan_metas, key); /* (tail, sizes, row chunk, class) */
    if (meta == NULL) {
        if (PyErr_Occurred()) goto done;
        NOT_MINE;
    }
    hold(&held, Py_NewRef(meta));
    if (!PyTuple_Check(meta) || PyTuple_GET_SIZE(meta) != 4 || !PyBytes_Check(PyTuple_GET_ITEM(meta, 0))) NOT_MINE;
    long large = PyLong_AsLong(PyTuple_GET_ITEM(meta, 3));
    if (large == -1 && PyErr_Occurred()) goto done;
    PyObject *graphs = hold(&held, PyObject_GetAttr(plan, str_graphs));
    NEED(graphs);
    if (!PyList_Check(graphs) || large < 0 || large >= PyList_GET_SIZE(graphs)) NOT_MINE;
    PyObject *graph = PyList_GET_ITEM(graphs, large);
    if (!PyTuple_Check(graph) || PyTuple_GET_SIZE(graph) != 2) NOT_MINE;
    hold(&held, Py_NewRef(graph));
    void *exec = PyLong_AsVoidPtr(PyTuple_GET_ITEM(graph, 1));
    if (exec == NULL) {
        if (PyErr_Occurred()) goto done;
        NOT_MINE;
    }
    PyObject *threshold = hold(&held, PyObject_GetAttr(inputs, str_threshold));
    NEED(threshold);
    if (!PyFloat_CheckExact(threshold)) NOT_MINE;
    double thr = PyFloat_AS_DOUBLE(threshold);
    if (!(thr > -F32_LIMIT && thr < F32_LIMIT)) NOT_MINE; /* NaN and past float32: enqueue rounds them */
    PyObject *mapping = hold(&held, PyObject_GetAttr(inputs, str_class_mapping));
    NEED(mapping);
    if (mapping != Py_None) NOT_MINE;
    PyObject *cap = hold(&held, PyObject_GetAttr(inputs, str_max_detections));
    NEED(cap);
    int64_t max_det = queries;
    if (cap != Py_None) {
        int overflow;
        long long value = PyLong_CheckExact(cap) ? PyLong_AsLongLongAndOverflow(cap, &overflow) : 0;
        if (value == -1 && PyErr_Occurred()) goto done;
        if (!PyLong_CheckExact(cap) || overflow != 0) NOT_MINE; /* enqueue's int() and its errors */
        if (value < max_det) max_det = value;
    }
    int64_t head[1 + HEAD_SCALARS + HEAD_BUFFERS];
    head[2] = head[4] = -1; /* K -1: the scalar threshold; M -1: no mapping */
    head[6] = max_det;
    if ((head[1] = int_attr(&held, impl, str_dummy_f)) == -1 && PyErr_Occurred()) goto done;
    if ((head[3] = int_attr(&held, impl, str_dummy_i)) == -1 && PyErr_Occurred()) goto done;
    if ((head[5] = int_attr(&held, inputs, str_num_classes)) == -1 && PyErr_Occurred()) goto done;
    PyObject *buffers = hold(&held, PyObject_GetAttr(impl, str_buffers));
    NEED(buffers);
    if (!PyTuple_Check(buffers) || PyTuple_GET_SIZE(buffers) != HEAD_BUFFERS) NOT_MINE;
    for (int i = 0; i < HEAD_BUFFERS; i++) {
        head[1 + HEAD_SCALARS + i] = PyLong_AsLongLong(PyTuple_GET_ITEM(buffers, i));
        if (head[1 + HEAD_SCALARS + i] == -1 && PyErr_Occurred()) goto done;
    }
    int64_t seq = int_attr(&held, impl, str_seq) + 1;
    if (PyErr_Occurred()) goto done;
    head[0] = seq;
    PyObject *device_index = hold(&held, PyObject_GetAttr(impl, str_device_index));
    NEED(device_index);
    PyObject *stream_obj = hold(&held, PyObject_Vectorcall(stream_fn, &device_index, 1, NULL));
    NEED(stream_obj);
    void *stream = PyLong_AsVoidPtr(stream_obj);
    if (stream == NULL && PyErr_Occurred()) goto done;
    PyObject *block = hold(&held, PyObject_GetAttr(impl, str_args_mv));
    NEED(block);
    if (PyObject_GetBuffer(block, &view, PyBUF_WRITABLE) < 0) goto done;
    Py_ssize_t words = view.len / 8;
    PyObject *tail = PyTuple_GET_ITEM(meta, 0);
    if (block_words > words || PyBytes_GET_SIZE(tail) != 8 * (block_words - TAIL_WORD) ||
        4 * (float_index + 1) > 8 * block_words || float_index < 2 * TAIL_WORD) {
        PyErr_Format(PyExc_ValueError, "enqueue_replay: a block of %zd words does not hold the plan's %lld", words,
                     (long long)block_words);
        goto done;
    }
    char *base = (char *)view.buf;
    /* Below, nothing refuses the call any more: the block is written, the number and tail recorded, then launched */
    if (write_head(base, words, logits, boxes, masks, head) < 0) goto done;
    PyObject *last_tail = hold(&held, PyObject_GetAttr(impl, str_args_tail));
    NEED(last_tail);
    if (last_tail != meta) {
        memcpy(base + 8 * TAIL_WORD, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail));
        if (PyObject_SetAttr(impl, str_args_tail, meta) < 0) goto done;
    }
    float thr32 = (float)thr;
    memcpy(base + 4 * float_index, &thr32, 4);
    PyObject *seq_obj = hold(&held, PyLong_FromLongLong(seq));
    NEED(seq_obj);
    if (PyObject_SetAttr(impl, str_seq, seq_obj) < 0) goto done;
    if (((graph_launch_fn)(uintptr_t)launch_fn)(exec, stream) != 0) {
        PyObject *graph_object = PyTuple_GET_ITEM(graph, 0); /* torch's replay() of it, for good */
        NEED(hold(&held, PyObject_CallMethodOneArg(impl, str_replay_fallback, graph_object)));
    }
    PyObject *keep = hold(&held, PyTuple_New(0));
    NEED(keep);
    result = ((PyTypeObject *)pending_type)->tp_alloc((PyTypeObject *)pending_type, 6);
    if (result == NULL) goto done;
    PyObject *items[6] = {inputs, plan, PyTuple_GET_ITEM(meta, 1), seq_obj, stream_obj, keep};
    for (int i = 0; i < 6; i++) PyTuple_SET_ITEM(result, i, Py_NewRef(items[i]));
    goto done;
not_mine:
    result = Py_NewRef(Py_None);
done:
#undef NEED
#undef NOT_MINE
    if (view.obj != NULL) PyBuffer_Release(&view);
    release(&held);
    return result;
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
    {"replay_config", (PyCFunction)(void (*)(void))replay_config, METH_FASTCALL,
     "replay_config(pending_type, stream_fn): the _Pending type and the current-stream getter of enqueue_replay"},
    {"enqueue_replay", (PyCFunction)(void (*)(void))enqueue_replay, METH_FASTCALL,
     "enqueue_replay(impl, inputs) -> _Pending or None: a replayed call's whole enqueue in one call"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_host", "The triton implementation's host steps in C.",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__host(void) {
    struct {
        PyObject **at;
        const char *name;
    } names[] = {
        {&str_data_ptr, "data_ptr"}, {&str_stride, "stride"}, {&str_use_cuda_graph, "use_cuda_graph"},
        {&str_launch_address, "_launch_address"}, {&str_plans, "_plans"}, {&str_seq, "_seq"},
        {&str_device_index, "_device_index"}, {&str_dummy_f, "_dummy_f_addr"}, {&str_dummy_i, "_dummy_i_addr"},
        {&str_args_mv, "_args_mv"}, {&str_buffers, "_buffers"}, {&str_args_tail, "_args_tail"},
        {&str_replay_fallback, "_replay_fallback"}, {&str_fast, "fast"}, {&str_metas, "metas"},
        {&str_graphs, "graphs"}, {&str_logits, "logits"}, {&str_boxes, "boxes"}, {&str_masks, "masks"},
        {&str_preprocess, "preprocess"}, {&str_threshold, "threshold"}, {&str_class_mapping, "class_mapping"},
        {&str_max_detections, "max_detections"}, {&str_num_classes, "num_classes"}, {&str_shape, "shape"},
        {&str_dtype, "dtype"}, {&str_key, "_key"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].at = PyUnicode_InternFromString(names[i].name);
        if (*names[i].at == NULL) return NULL;
    }
    PyObject *created = PyModule_Create(&module);
    if (created == NULL) return NULL;
    /* enqueue_replay's copies of the Python side's constants (the tests compare them) */
    PyObject *limit = PyFloat_FromDouble(F32_LIMIT);
    int failed = limit == NULL || PyModule_AddObjectRef(created, "F32_LIMIT", limit) < 0 ||
                 PyModule_AddIntConstant(created, "TAIL_WORD", TAIL_WORD) < 0;
    Py_XDECREF(limit);
    if (failed) Py_CLEAR(created);
    return created;
}
