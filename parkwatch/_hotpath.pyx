# cython: language_level=3, boundscheck=False, wraparound=False, infer_types=False
"""Ingest's per-reading loops compiled: the site checks of a plainly valid message, the
counter watch and line-protocol encoding.

Each function does what its Python reference does — :func:`parkwatch.wire.plain_message`'s
loop, :meth:`ingest.counters.CounterWatch.flag` and :func:`ingest.service.encode_lines` — in
the same order with the same results (``tests/test_hotpath.py`` holds them to it). What makes
them cheaper is not different work but no bytecode per reading: the dict look-ups, float
comparisons and string building are C calls. The Python versions stay as the reference and
as the fallback where this module is not built.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport fabs, isfinite, llround, signbit
from libc.string cimport memcpy, strlen

cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags,
                                int* ptype) except NULL
    int Py_DTSF_ADD_DOT_0
    bint PyFloat_CheckExact(object)
    bint PyUnicode_CheckExact(object)
    bint PyLong_CheckExact(object)
    bint PyDict_CheckExact(object)
    bint PyTuple_CheckExact(object)
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1

cdef object _new_tuple = tuple.__new__


def check_plain(list readings, object meters, object newest_ok, type accepted):
    """The site checks of :func:`parkwatch.wire.plain_message` over its decoded readings: the
    accepted readings (``accepted`` tuples of meter, time, values, quality) or None as soon as
    one is off (unknown meter, from the future, a quantity the meter has not, out of bounds)."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(readings)
    cdef Py_ssize_t pos
    cdef PyObject* found
    cdef PyObject* key
    cdef PyObject* item
    cdef double v
    cdef list out = []
    cdef object reading, meter, t, bounds, values, walked, pair, low, high, value
    cdef bint meters_dict = PyDict_CheckExact(meters)
    for i in range(n):
        reading = <object>PyList_GET_ITEM(readings, i)
        if meters_dict:
            found = PyDict_GetItem(meters, reading.m)
            if found is NULL:
                return None
            meter = <object>found
        else:
            meter = meters.get(reading.m)
            if meter is None:
                return None
        t = reading.t
        if t > newest_ok:
            return None
        bounds = meter.bounds
        values = reading.q
        # a mapping other than a dict is walked through a copy (same order as its items())
        walked = values if PyDict_CheckExact(values) else dict(values.items())
        pos = 0
        while PyDict_Next(walked, &pos, &key, &item):
            if PyDict_CheckExact(bounds):
                found = PyDict_GetItem(bounds, <object>key)
                if found is NULL:
                    return None  # not a quantity of this meter
                pair = <object>found
            else:
                try:
                    pair = bounds[<object>key]
                except KeyError:
                    return None
            value = <object>item
            if (
                PyTuple_CheckExact(pair) and PyTuple_GET_SIZE(pair) == 2
                and PyFloat_CheckExact(value)
                and PyFloat_CheckExact(<object>PyTuple_GET_ITEM(pair, 0))
                and PyFloat_CheckExact(<object>PyTuple_GET_ITEM(pair, 1))
            ):
                v = PyFloat_AS_DOUBLE(value)
                if not (
                    PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(pair, 0)) <= v
                    <= PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(pair, 1))
                ):
                    return None
            else:
                # ints among the bounds (exact comparison, as Python's)
                low, high = pair
                if not low <= value <= high:
                    return None
        out.append(_new_tuple(accepted, (meter, t, values, reading.s)))
    return out


def flag_counters(
    dict last, list readings, frozenset counters, list not_counted, str bad, str ok,
    str decreased, object decrease,
):
    """:meth:`ingest.counters.CounterWatch.flag`'s loop: ``last`` its state, ``counters`` the
    counter quantities, ``not_counted`` its marker entry, ``bad``/``ok``/``decreased`` the
    quality names, ``decrease`` the class of what it finds (meter, quantity, before, after)."""
    cdef list found = []
    cdef Py_ssize_t i, n = PyList_GET_SIZE(readings)
    cdef Py_ssize_t pos
    cdef PyObject* key
    cdef PyObject* item
    cdef PyObject* got
    cdef object reading, meter, t, values, walked, quality, series, newest, entry, name, value
    cdef object before
    for i in range(n):
        reading = <object>PyList_GET_ITEM(readings, i)
        meter = <object>PyTuple_GET_ITEM(reading, 0)
        t = <object>PyTuple_GET_ITEM(reading, 1)
        values = <object>PyTuple_GET_ITEM(reading, 2)
        quality = <object>PyTuple_GET_ITEM(reading, 3)
        if quality == bad:
            continue
        series = meter.series
        got = PyDict_GetItem(last, series)
        if got is NULL:
            newest = {}
            PyDict_SetItem(last, series, newest)
        else:
            newest = <object>got
        # a mapping other than a dict is walked through a copy (same order as its items())
        walked = values if PyDict_CheckExact(values) else dict(values.items())
        pos = 0
        while PyDict_Next(walked, &pos, &key, &item):
            name = <object>key
            value = <object>item
            got = PyDict_GetItem(newest, name)
            if got is NULL:
                newest[name] = [t, value] if name in counters else not_counted
                continue
            entry = <object>got
            if entry is not_counted or t <= entry[0]:
                continue
            before = entry[1]
            entry[0] = t
            entry[1] = value
            if value < before:
                found.append(decrease(meter.id, name, before, value))
                if quality == ok:
                    readings[i] = reading._replace(s=decreased)
    return found


cdef struct _Buf:
    char* data
    Py_ssize_t size
    Py_ssize_t cap


cdef int _grow(_Buf* buf, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = buf.cap
    cdef char* data
    if buf.size + more <= cap:
        return 0
    while buf.size + more > cap:
        cap = cap * 2 if cap else 256
    data = <char*>PyMem_Realloc(buf.data, cap)
    if data is NULL:
        raise MemoryError()
    buf.data = data
    buf.cap = cap
    return 0


cdef inline int _put(_Buf* buf, const char* text, Py_ssize_t size) except -1:
    _grow(buf, size)
    memcpy(buf.data + buf.size, text, size)
    buf.size += size
    return 0


cdef inline int _put_str(_Buf* buf, object text) except -1:
    cdef Py_ssize_t size
    cdef const char* utf8 = PyUnicode_AsUTF8AndSize(text, &size)
    return _put(buf, utf8, size)


def encode_lines(list readings, dict quality_field):
    """:func:`ingest.service.encode_lines` for readings whose values are all floats and whose
    times are ints: one line per reading, each float as ``repr`` writes it. None if a reading
    does not fit that (the caller then takes the Python encoder, which writes anything)."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(readings)
    cdef Py_ssize_t pos
    cdef PyObject* key
    cdef PyObject* item
    cdef PyObject* got
    cdef char* number
    cdef char digits[32]
    cdef Py_ssize_t size
    cdef long long t
    cdef int overflow
    cdef bint first
    cdef _Buf buf
    cdef list lines = []
    cdef double v
    cdef object reading, meter, values, quality, line
    buf.data = NULL
    buf.size = 0
    buf.cap = 0
    try:
        for i in range(n):
            reading = <object>PyList_GET_ITEM(readings, i)
            if not isinstance(reading, tuple) or PyTuple_GET_SIZE(reading) != 4:
                return None
            meter = <object>PyTuple_GET_ITEM(reading, 0)
            values = <object>PyTuple_GET_ITEM(reading, 2)
            quality = <object>PyTuple_GET_ITEM(reading, 3)
            if not PyLong_CheckExact(<object>PyTuple_GET_ITEM(reading, 1)):
                return None
            t = PyLong_AsLongLongAndOverflow(<object>PyTuple_GET_ITEM(reading, 1), &overflow)
            if overflow or not PyDict_CheckExact(values):
                return None
            buf.size = 0
            _put_str(&buf, meter.series)
            _put(&buf, " ", 1)
            pos = 0
            first = True
            while PyDict_Next(values, &pos, &key, &item):
                if not PyFloat_CheckExact(<object>item) or not PyUnicode_CheckExact(<object>key):
                    return None
                v = PyFloat_AS_DOUBLE(<object>item)
                if not isfinite(v):
                    return None  # no line protocol for it: the Python encoder's way applies
                if not first:
                    _put(&buf, ",", 1)
                first = False
                _put_str(&buf, <object>key)
                _put(&buf, "=", 1)
                size = _short_decimal(v, digits)
                if size:
                    _put(&buf, digits, size)
                else:
                    # repr's shortest round-trip form: what InfluxDB parses back to the float
                    number = PyOS_double_to_string(v, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
                    try:
                        _put(&buf, number, strlen(number))
                    finally:
                        PyMem_Free(number)
            if quality != "ok":
                got = PyDict_GetItem(quality_field, quality)
                if got is NULL:
                    raise KeyError(quality)
                _put_str(&buf, <object>got)
            _put(&buf, " ", 1)
            # time: a plain decimal integer (milliseconds; the writer asks for ms precision)
            _put(&buf, digits, _decimal(t, digits))
            lines.append(PyUnicode_DecodeUTF8(buf.data, buf.size, NULL))
    finally:
        PyMem_Free(buf.data)
    return lines


cdef Py_ssize_t _decimal(long long value, char* out):
    cdef char tmp[24]
    cdef Py_ssize_t k = 0, j
    cdef unsigned long long u
    cdef bint negative = value < 0
    if negative:
        u = <unsigned long long>(-(value + 1)) + 1
    else:
        u = <unsigned long long>value
    while True:
        tmp[k] = <char>(48 + u % 10)
        k += 1
        u //= 10
        if u == 0:
            break
    j = 0
    if negative:
        out[0] = b'-'
        j = 1
    while k > 0:
        k -= 1
        out[j] = tmp[k]
        j += 1
    return j


# exact powers of ten as doubles (10**k < 2**53 for k <= 15)
cdef double[7] _TENS = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0]


cdef Py_ssize_t _short_decimal(double v, char* out):
    """``v`` as a plain decimal of at most 6 fractional digits that reads back as exactly
    ``v``, or 0 if there is none (or ``v`` is large): the fewest digits of that form, which
    is what ``repr`` writes for meter values like 412.5 or 1834567.25 — a tenth of its cost.
    Why it reads back exactly: ``d`` and ``10**k`` are exact doubles, so ``d / 10**k`` is the
    double nearest the decimal d·10⁻ᵏ, which is what any correct parser (InfluxDB's) gives."""
    cdef int k
    cdef long long d, whole, frac
    cdef Py_ssize_t j = 0, w
    cdef double a = fabs(v)
    if not (a < 1e9):  # and NaN; d stays far below 2**53
        return 0
    for k in range(7):
        d = llround(a * _TENS[k])
        if <double>d / _TENS[k] == a:
            break
    else:
        return 0
    if signbit(v):
        out[0] = b'-'
        j = 1
    whole = d // <long long>_TENS[k]
    frac = d - whole * <long long>_TENS[k]
    j += _decimal(whole, out + j)
    out[j] = b'.'
    j += 1
    if k == 0:
        out[j] = b'0'
        return j + 1
    w = k
    while w > 0:  # k digits, leading zeros kept
        w -= 1
        out[j + w] = <char>(48 + frac % 10)
        frac //= 10
    return j + k


def read_publishes(const unsigned char[::1] data, Py_ssize_t offset, type message):
    """Consecutive QoS 0/1 PUBLISH packets of a socket read from ``offset``, as ``message``
    tuples (topic, payload, qos, packet id or 0) — what :mod:`parkwatch.mqttio` builds from
    ``mqtt5.read`` — with the offset after them and their payloads' bytes. It stops at the
    first packet that is not such a plain PUBLISH (another type, QoS 2, properties, a topic
    that is not plain UTF-8, a remaining length not in its shortest form, an incomplete packet), which the caller reads with ``mqtt5``:
    what this takes, the codec would have read the same; anything else stays the codec's."""
    cdef Py_ssize_t size = data.shape[0]
    cdef Py_ssize_t at = offset, p, end, topic_len, payload_bytes = 0
    cdef Py_ssize_t length
    cdef int shift, qos, packet_id
    cdef unsigned char first, byte
    cdef list out = []
    cdef object topic, payload
    while at + 2 <= size:
        first = data[at]
        if first >> 4 != 3:
            break  # not a PUBLISH
        qos = (first >> 1) & 3
        if qos > 1 or (qos == 0 and first & 8):
            break  # QoS 2 (refused by the caller), the malformed 3 and a QoS 0 duplicate
        # remaining length: a variable byte integer of at most four bytes
        p = at + 1
        length = 0
        shift = 0
        while True:
            if p >= size or shift > 21:
                length = -1
                break
            byte = data[p]
            p += 1
            if byte == 0 and shift > 0:
                length = -1  # not the shortest encoding, which mqtt5 refuses: the codec's case
                break
            length |= <Py_ssize_t>(byte & 127) << shift
            if not byte & 128:
                break
            shift += 7
        if length < 0:
            break
        end = p + length
        if end > size or p + 2 > end:
            break
        topic_len = (<Py_ssize_t>data[p] << 8) | data[p + 1]
        p += 2
        if topic_len == 0 or p + topic_len > end:
            break  # an empty topic needs a topic alias (a property): the codec's case
        if _odd_topic(&data[p], topic_len):
            break
        try:
            topic = (<const char*>&data[p])[:topic_len].decode("utf-8")
        except UnicodeDecodeError:
            break
        p += topic_len
        packet_id = 0
        if qos:
            if p + 2 > end:
                break
            packet_id = (data[p] << 8) | data[p + 1]
            p += 2
            if packet_id == 0:
                break
        # properties: only none (a zero length) is taken here
        if p >= end or data[p] != 0:
            break
        p += 1
        payload = (<const char*>&data[p])[:end - p]
        payload_bytes += end - p
        out.append(_new_tuple(message, (topic, payload, qos, packet_id)))
        at = end
    return out, at, payload_bytes


cdef bint _odd_topic(const unsigned char* text, Py_ssize_t size):
    """A wildcard or NUL in a PUBLISH topic is a protocol error: left to the codec."""
    cdef Py_ssize_t i
    for i in range(size):
        if text[i] == 0 or text[i] == 43 or text[i] == 35:  # NUL, '+', '#'
            return True
    return False
