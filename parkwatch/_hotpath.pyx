# cython: language_level=3, boundscheck=False, wraparound=False, infer_types=False
"""Ingest's per-reading loops compiled: the scan of a plainly valid message, its site
checks, the counter watch and line-protocol encoding.

Each function does what its Python reference does — :func:`parkwatch.wire.plain_message`'s
loop, :meth:`ingest.counters.CounterWatch.flag` and :func:`ingest.service.encode_lines` — in
the same order with the same results (``tests/test_hotpath.py`` holds them to it). What makes
them cheaper is not different work but no bytecode per reading: the dict look-ups, float
comparisons and string building are C calls. The Python versions stay as the reference and
as the fallback where this module is not built.
"""

cimport cython
from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_SetItem, PyDict_Size
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromLongLong
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport fabs, isfinite, llround, signbit
from libc.string cimport memcmp, memcpy, strlen

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
    bint PyBytes_CheckExact(object)
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow) except? -1.0
    object PyUnicode_FromStringAndSize(const char* s, Py_ssize_t size)
    bytes PyBytes_FromStringAndSize(const char* s, Py_ssize_t size)
    bint PyTuple_Check(object)
    bint PyUnicode_IS_COMPACT_ASCII(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    void* PyUnicode_DATA(object)

cdef object _new_tuple = tuple.__new__

cdef extern from "Python.h":
    ctypedef struct _TypeObject "PyTypeObject":
        Py_ssize_t tp_basicsize
        Py_ssize_t tp_itemsize
        PyObject* (*tp_alloc)(_TypeObject*, Py_ssize_t)
    void _tuple_set "PyTuple_SET_ITEM"(PyObject*, Py_ssize_t, PyObject*)
    bint PyType_IsSubtype(object, object)
    void PyObject_GC_UnTrack(void*)


cdef inline bint _plain_tuple_type(type kind):
    """A subclass of tuple with nothing of its own in its instances (a NamedTuple): one
    can be made as ``tuple.__new__`` makes it, its type's allocation then its items."""
    cdef _TypeObject* t = <_TypeObject*>kind
    cdef _TypeObject* base = <_TypeObject*>tuple
    return (
        PyType_IsSubtype(kind, tuple)
        and t.tp_basicsize == base.tp_basicsize
        and t.tp_itemsize == base.tp_itemsize
    )


cdef object _tuple_of(type kind, object a, object b, object c, object d):
    """``tuple.__new__(kind, (a, b, c, d))`` for a :func:`_plain_tuple_type` ``kind``, without
    the call and the tuple in between (what ``tuple.__new__`` does for a subclass)."""
    # Sound for CPython 3.11–3.13 (pyproject caps Python below 3.14): 3.14's tuples cache
    # their hash in a field that must start at -1, which tp_alloc's zeroed memory would not
    cdef PyObject* made = (<_TypeObject*>kind).tp_alloc(<_TypeObject*>kind, 4)
    cdef object out
    if made is NULL:
        raise MemoryError()
    out = <object>made
    Py_DECREF(out)  # the cast took a reference of its own: out holds the allocation's
    Py_INCREF(a)
    _tuple_set(made, 0, <PyObject*>a)
    Py_INCREF(b)
    _tuple_set(made, 1, <PyObject*>b)
    Py_INCREF(c)
    _tuple_set(made, 2, <PyObject*>c)
    Py_INCREF(d)
    _tuple_set(made, 3, <PyObject*>d)
    return out


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


cdef Py_ssize_t _decimal(long long value, char* out) noexcept:
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


cdef Py_ssize_t _short_decimal(double v, char* out) noexcept:
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


# the topics of recent PUBLISHes, as str: a gateway publishes on the same topic every time,
# so its str is made (and, looked up by ingest, hashed) once rather than per message. Only
# ASCII ones (their characters are their bytes), in a table of _TOPICS slots by a hash of the
# bytes (one probe; a topic meeting another in its slot replaces it), so that a park's many
# gateways taking turns each keep their slot (a first-in-first-out list missed every time
# once more gateways took turns than it held)
cdef enum:
    _TOPICS = 1024
cdef PyObject* _topics[_TOPICS]


cdef object _topic(const unsigned char* text, Py_ssize_t size):
    """The str of a topic's UTF-8 ``text``: a recent one's where the same (raises
    UnicodeDecodeError where it is not UTF-8)."""
    cdef Py_ssize_t k
    cdef unsigned int h = 2166136261u  # FNV-1a: cheap, and every byte counts
    cdef PyObject* seen
    cdef object topic
    for k in range(size):
        h = (h ^ text[k]) * 16777619u
    h &= _TOPICS - 1
    seen = _topics[h]
    if (
        seen is not NULL
        and PyUnicode_GET_LENGTH(<object>seen) == size
        and memcmp(PyUnicode_DATA(<object>seen), text, size) == 0
    ):
        return <object>seen
    topic = (<const char*>text)[:size].decode("utf-8")
    if PyUnicode_CheckExact(topic) and PyUnicode_IS_COMPACT_ASCII(topic):
        Py_INCREF(topic)
        _topics[h] = <PyObject*>topic
        if seen is not NULL:
            Py_DECREF(<object>seen)
    return topic


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
    cdef object topic, payload, made
    cdef bint direct = _plain_tuple_type(message)
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
            topic = _topic(&data[p], topic_len)
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
        if direct:
            made = _tuple_of(message, topic, payload, qos, packet_id)
            # a str, bytes and ints: in no cycle, so out of the collector's young lists (the
            # collector untracks only exact tuples itself; a chunk's messages live until
            # stored, through several young collections)
            PyObject_GC_UnTrack(<PyObject*>made)
            out.append(made)
        else:
            out.append(_new_tuple(message, (topic, payload, qos, packet_id)))
        at = end
    return out, at, payload_bytes


def pubacks(list messages):
    """What :meth:`parkwatch.mqttio.FastClient.release` needs of a chunk of ``Message``
    tuples (topic, payload, qos, packet id): the PUBACKs of the QoS 1 ones, in order, as the
    codec writes a plain success (4 bytes each), and the payloads' bytes. None for anything
    else in the list (the caller's Python then does it)."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(messages), at = 0, payload_bytes = 0
    cdef object item, payload, qos, packet_id
    cdef long ident
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 4 * n)
    cdef char* acks = PyBytes_AS_STRING(out)
    for i in range(n):
        item = <object>PyList_GET_ITEM(messages, i)
        if not PyTuple_Check(item) or PyTuple_GET_SIZE(item) != 4:
            return None
        payload = <object>PyTuple_GET_ITEM(item, 1)
        qos = <object>PyTuple_GET_ITEM(item, 2)
        packet_id = <object>PyTuple_GET_ITEM(item, 3)
        if not PyBytes_CheckExact(payload) or not PyLong_CheckExact(qos):
            return None
        # compared as Python ints first: a C cast of a huge int would raise, not hand over
        if not 0 <= qos <= 2:
            return None
        payload_bytes += PyBytes_GET_SIZE(payload)
        if qos == 0:
            continue
        if not PyLong_CheckExact(packet_id) or not 0 <= packet_id <= 65_535:
            return None
        ident = packet_id
        acks[at] = 0x40
        acks[at + 1] = 0x02
        acks[at + 2] = <char>(ident >> 8)
        acks[at + 3] = <char>(ident & 255)
        at += 4
    return (out if at == 4 * n else out[:at]), payload_bytes


def join_lines(list lines):
    """``("\\n".join(lines) + "\\n").encode()`` for a batch of line-protocol lines, in one
    pass straight to the bytes (the str join and its encoding cost ~80 ns a line, as much as
    encoding the line). None for an empty list or anything but ASCII strs among the lines
    (the caller's Python then joins them)."""
    cdef Py_ssize_t i, n = PyList_GET_SIZE(lines), total = 0, size
    cdef object line
    cdef bytes body
    cdef char* out
    if n == 0:
        return None
    for i in range(n):
        line = <object>PyList_GET_ITEM(lines, i)
        if not PyUnicode_CheckExact(line) or not PyUnicode_IS_COMPACT_ASCII(line):
            return None
        total += PyUnicode_GET_LENGTH(line) + 1
    body = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(body)
    # no Python code runs between the two passes: the list and its strs are as measured
    for i in range(n):
        line = <object>PyList_GET_ITEM(lines, i)
        size = PyUnicode_GET_LENGTH(line)
        memcpy(out, PyUnicode_DATA(line), size)
        out[size] = 10  # '\n'
        out += size + 1
    return body


cdef bint _odd_topic(const unsigned char* text, Py_ssize_t size):
    """A wildcard or NUL in a PUBLISH topic is a protocol error: left to the codec."""
    cdef Py_ssize_t i
    for i in range(size):
        if text[i] == 0 or text[i] == 43 or text[i] == 35:  # NUL, '+', '#'
            return True
    return False


# --- the scan of a plainly valid message ------------------------------------------------

# what the scan gives up on: the message then goes to msgspec's decoding (the reference)
cdef enum:
    _GIVE_UP = -1

cdef struct _Scan:
    const unsigned char* text
    Py_ssize_t at
    Py_ssize_t size


cdef inline void _space(_Scan* s) noexcept:
    cdef unsigned char c
    while s.at < s.size:
        c = s.text[s.at]
        if c == 32 or c == 10 or c == 13 or c == 9:  # JSON's whitespace
            s.at += 1
        else:
            return


cdef inline bint _expect(_Scan* s, unsigned char c) noexcept:
    """Skip whitespace, then ``c`` (True) or nothing (False)."""
    _space(s)
    if s.at < s.size and s.text[s.at] == c:
        s.at += 1
        return True
    return False


cdef inline Py_ssize_t _string(_Scan* s, Py_ssize_t* length) noexcept:
    """A string without escapes, in printable ASCII: its start (``length`` its size), or
    _GIVE_UP for anything else (escapes, other bytes: msgspec's case)."""
    cdef Py_ssize_t begin
    cdef unsigned char c
    if not _expect(s, 34):
        return _GIVE_UP
    begin = s.at
    while s.at < s.size:
        c = s.text[s.at]
        if c == 34:
            length[0] = s.at - begin
            s.at += 1
            return begin
        if c == 92 or c < 32 or c >= 127:
            return _GIVE_UP
        s.at += 1
    return _GIVE_UP


cdef inline bint _key(_Scan* s, const char* name, Py_ssize_t size, Py_ssize_t begin,
                      Py_ssize_t length) noexcept:
    return length == size and memcmp(s.text + begin, name, size) == 0


cdef inline int _int(_Scan* s, long long* out) noexcept:
    """A non-negative integer literal of at most 18 digits (no fraction, no exponent):
    0, or _GIVE_UP for anything else (signs, "-0", big or non-integral numbers)."""
    cdef Py_ssize_t begin
    cdef long long value = 0
    cdef unsigned char c
    _space(s)
    begin = s.at
    while s.at < s.size and 48 <= s.text[s.at] <= 57:
        value = value * 10 + (s.text[s.at] - 48)
        s.at += 1
        if s.at - begin > 18:
            return _GIVE_UP
    if s.at == begin or (s.text[begin] == 48 and s.at - begin > 1):
        return _GIVE_UP  # none, or a leading zero (not JSON)
    if s.at < s.size:
        c = s.text[s.at]
        if c == 46 or c == 101 or c == 69:  # '.', 'e', 'E'
            return _GIVE_UP
    out[0] = value
    return 0


# exact powers of ten as doubles, for the exact conversion below
cdef double[23] _POW10 = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]


cdef inline Py_ssize_t _digits(_Scan* s, long long* mantissa, int* significant) noexcept:
    """The decimal digits from ``s.at`` on (an integer part or a fraction): how many. Each
    counts as significant from the first non-zero one of the number on, and the first 18
    significant ones go into ``mantissa`` (at most 10**18, no overflow)."""
    cdef Py_ssize_t begin = s.at
    cdef unsigned char c
    while s.at < s.size:
        c = s.text[s.at]
        if c < 48 or c > 57:
            break
        if significant[0] or c != 48:
            significant[0] += 1
        if significant[0] <= 18:
            mantissa[0] = mantissa[0] * 10 + (c - 48)
        s.at += 1
    return s.at - begin


cdef inline int _number(_Scan* s, double* out) except -2:
    """A JSON number as the float msgspec makes of it (an int literal converted, a float
    literal correctly rounded): 0, or _GIVE_UP (not JSON, "-0", an integer of more than 15
    digits, not finite)."""
    cdef Py_ssize_t begin, digits_at, int_digits, frac_digits = 0
    cdef bint negative = False, fraction = False, exponent = False
    cdef long long mantissa = 0
    cdef int significant = 0
    cdef char literal[64]
    cdef double value
    _space(s)
    begin = s.at
    if s.at < s.size and s.text[s.at] == 45:  # '-'
        negative = True
        s.at += 1
    digits_at = s.at
    int_digits = _digits(s, &mantissa, &significant)
    if int_digits == 0 or (s.text[digits_at] == 48 and int_digits > 1):
        return _GIVE_UP
    if s.at < s.size and s.text[s.at] == 46:  # '.'
        fraction = True
        s.at += 1
        frac_digits = _digits(s, &mantissa, &significant)
        if frac_digits == 0:
            return _GIVE_UP
    if s.at < s.size and (s.text[s.at] == 101 or s.text[s.at] == 69):  # 'e', 'E'
        exponent = True
        s.at += 1
        if s.at < s.size and (s.text[s.at] == 43 or s.text[s.at] == 45):
            s.at += 1
        digits_at = s.at
        while s.at < s.size and 48 <= s.text[s.at] <= 57:
            s.at += 1
        if s.at == digits_at:
            return _GIVE_UP
    if not fraction and not exponent:
        # an integer, which msgspec reads as an int and converts: exact up to 15 digits
        if significant > 15 or (negative and mantissa == 0):
            return _GIVE_UP
        value = <double>mantissa
        out[0] = -value if negative else value
        return 0
    if not exponent and significant <= 15 and frac_digits <= 22:
        # both exact doubles, so the quotient is the correctly rounded value
        value = <double>mantissa / _POW10[frac_digits]
        out[0] = -value if negative else value
        return 0
    if s.at - begin >= 63:
        return _GIVE_UP
    memcpy(literal, s.text + begin, s.at - begin)
    literal[s.at - begin] = 0
    value = PyOS_string_to_double(literal, NULL, NULL)  # correctly rounded
    if not isfinite(value):
        return _GIVE_UP
    out[0] = value
    return 0


cdef struct _Record:
    PyObject* meter  # a reference the Scanned holding the record owns
    long long t
    int quality  # index in the qualities
    Py_ssize_t first  # its first value in the values
    Py_ssize_t count


cdef struct _Value:
    PyObject* key  # borrowed: the registry's own name (a key of the meter's bounds, the
                   # meter held by its record)
    double v


cdef enum:
    # a message's records and values held in the Scanned itself up to these counts (a
    # gateway's message is mostly a few readings of a few values): the two blocks each
    # message's scan took from the allocator were a tenth of a one-reading message's scan
    _SMALL_RECORDS = 4
    _SMALL_VALUES = 8


cdef struct _Records:
    _Record* records  # small_records until more are needed, then a block of its own
    Py_ssize_t size
    Py_ssize_t cap
    _Value* values  # small_values likewise
    Py_ssize_t n_values
    Py_ssize_t values_cap
    _Record small_records[_SMALL_RECORDS]
    _Value small_values[_SMALL_VALUES]


cdef int _more(void** array, Py_ssize_t* cap, Py_ssize_t size, Py_ssize_t item,
               void* small) except -1:
    """Room in ``array`` (``cap`` items, ``size`` used) for one more; from ``small`` (the
    items held inline) to a block of its own, copied, the first time it grows."""
    cdef Py_ssize_t new_cap
    cdef void* data
    if size < cap[0]:
        return 0
    # doubling: blocks this small come from Python's own allocator (a 64-record start went
    # to malloc twice per message)
    new_cap = cap[0] * 2 if cap[0] else 4
    if array[0] == small:
        data = PyMem_Malloc(new_cap * item)
        if data is not NULL:
            memcpy(data, small, size * item)
    else:
        data = PyMem_Realloc(array[0], new_cap * item)
    if data is NULL:
        raise MemoryError()
    array[0] = data
    cap[0] = new_cap
    return 0


cdef inline bint _named(PyObject* key, const unsigned char* name, Py_ssize_t length) noexcept:
    """``key`` (a str) is ``name``: compact ASCII strs (every registry name) compared in
    place; anything else is no match (the scan then gives up, msgspec's path says why)."""
    return (
        PyUnicode_CheckExact(<object>key)
        and PyUnicode_IS_COMPACT_ASCII(<object>key)
        and PyUnicode_GET_LENGTH(<object>key) == length
        and memcmp(PyUnicode_DATA(<object>key), name, length) == 0
    )


cdef inline PyObject* _bound(object bounds, const unsigned char* name, Py_ssize_t length,
                             Py_ssize_t* hint, PyObject** key) noexcept:
    """The bounds of quantity ``name`` (``key`` set to the registry's own name), or NULL:
    the entries from ``hint`` (where the last look-up stopped) to the end, then from the
    start. A dict's keys are distinct, so where the search starts changes only its cost."""
    cdef Py_ssize_t pos = hint[0], start = hint[0]
    cdef PyObject* item
    while PyDict_Next(bounds, &pos, key, &item):
        if _named(key[0], name, length):
            hint[0] = pos
            return item
    pos = 0
    while pos < start and PyDict_Next(bounds, &pos, key, &item):
        if _named(key[0], name, length):
            hint[0] = pos
            return item
    return NULL


cdef int _scan_reading(_Scan* s, dict meters, long long newest_ok, tuple qualities,
                       int ok_at, _Records* out, Py_ssize_t* meter_hint) except -1:
    """One reading of a plainly valid message, checked against the site, into ``out``: 0,
    or 1 to give up. ``ok_at``: where ``ok`` is in the qualities (a reading without
    ``s``)."""
    cdef Py_ssize_t begin, length, name_size, k, first = out.n_values, hint = 0, pos
    cdef long long t = 0
    cdef int seen = 0, quality = ok_at
    cdef double v
    cdef PyObject* found
    cdef PyObject* key
    cdef PyObject* item
    cdef PyObject* meter = NULL
    cdef const char* name
    cdef object bounds = None, pair, low, high
    cdef _Record* record
    if not _expect(s, 123) or _expect(s, 125):  # '{', and not an empty one
        return 1
    while True:
        begin = _string(s, &length)
        if begin == _GIVE_UP or not _expect(s, 58):  # ':'
            return 1
        if _key(s, b"m", 1, begin, length):
            if seen & 1:
                return 1
            seen |= 1
            begin = _string(s, &length)
            if begin == _GIVE_UP:
                return 1
            # the entry after the last reading's meter first (a gateway writes its meters in
            # the registry's order): found there, the name needs no str of its own and no
            # hash (per reading, a tenth of the scan); else the first entry, as _bound wraps
            # (past the last meter, one meter with several readings, meters in turn); else
            # looked up by a str as before. A dict's keys are distinct, so either way it is
            # the same meter
            meter = NULL
            pos = meter_hint[0]
            if PyDict_Next(meters, &pos, &key, &item) and _named(
                key, s.text + begin, length
            ):
                meter = item
            elif meter_hint[0] != 0:
                pos = 0
                if PyDict_Next(meters, &pos, &key, &item) and _named(
                    key, s.text + begin, length
                ):
                    meter = item
            if meter is not NULL:
                meter_hint[0] = pos
            else:
                meter = PyDict_GetItem(
                    meters, PyUnicode_FromStringAndSize(<const char*>s.text + begin, length)
                )
            if meter is NULL:
                return 1
        elif _key(s, b"t", 1, begin, length):
            if seen & 2 or _int(s, &t) == _GIVE_UP:
                return 1
            seen |= 2
            if not 946_684_800_000 <= t <= newest_ok:
                return 1
        elif _key(s, b"s", 1, begin, length):
            if seen & 4:
                return 1
            seen |= 4
            begin = _string(s, &length)
            if begin == _GIVE_UP:
                return 1
            quality = -1
            for k in range(PyTuple_GET_SIZE(qualities)):
                name = PyUnicode_AsUTF8AndSize(<object>PyTuple_GET_ITEM(qualities, k), &name_size)
                if name_size == length and memcmp(s.text + begin, name, length) == 0:
                    quality = k
                    break
            if quality < 0:
                return 1
        elif _key(s, b"q", 1, begin, length):
            # the meter first (as every gateway writes it): else msgspec's case
            if seen & 8 or not seen & 1 or not _expect(s, 123) or _expect(s, 125):
                return 1
            seen |= 8
            bounds = (<object>meter).bounds
            if not PyDict_CheckExact(bounds):
                return 1
            while True:
                begin = _string(s, &length)
                if begin == _GIVE_UP or not _expect(s, 58) or _number(s, &v) == _GIVE_UP:
                    return 1
                # the quantity's name as the registry's own string: a quantity it does not
                # know is not plainly valid. From where the last one was found (a gateway
                # writes a meter's quantities in the same order every time, often the
                # registry's), round to the start: the same key, fewer compares
                found = _bound(bounds, s.text + begin, length, &hint, &key)
                if found is NULL:
                    return 1
                pair = <object>found
                if not (
                    PyTuple_CheckExact(pair) and PyTuple_GET_SIZE(pair) == 2
                    and PyFloat_CheckExact(<object>PyTuple_GET_ITEM(pair, 0))
                    and PyFloat_CheckExact(<object>PyTuple_GET_ITEM(pair, 1))
                ):
                    return 1
                if not (
                    PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(pair, 0)) <= v
                    <= PyFloat_AS_DOUBLE(<object>PyTuple_GET_ITEM(pair, 1))
                ):
                    return 1
                for k in range(first, out.n_values):
                    if out.values[k].key == key:
                        return 1  # a name twice: msgspec keeps the last value in the first place
                if out.n_values - first >= 64:
                    return 1
                _more(<void**>&out.values, &out.values_cap, out.n_values, sizeof(_Value),
                      out.small_values)
                out.values[out.n_values].key = key
                out.values[out.n_values].v = v
                out.n_values += 1
                if _expect(s, 44):  # ','
                    continue
                if _expect(s, 125):
                    break
                return 1
        else:
            return 1  # an unknown key: msgspec says so
        if _expect(s, 44):
            continue
        if _expect(s, 125):
            break
        return 1
    if seen & 11 != 11:
        return 1
    _more(<void**>&out.records, &out.cap, out.size, sizeof(_Record), out.small_records)
    record = &out.records[out.size]
    Py_INCREF(<object>meter)  # released with the record (Scanned.__dealloc__)
    record.meter = meter
    record.t = t
    record.quality = quality
    record.first = first
    record.count = out.n_values - first
    out.size += 1
    return 0


cdef int _scan_message(_Scan* s, str gateway, dict meters, long long newest_ok,
                       Py_ssize_t max_readings, tuple qualities, int ok_at, _Records* out,
                       long long* seq) except -1:
    """A plainly valid message's envelope and readings into ``out``: 0, or 1 to give up."""
    cdef Py_ssize_t begin, length, gw_size
    cdef long long one = 0
    cdef int seen = 0
    cdef Py_ssize_t meter_hint = 0  # see _scan_reading
    cdef const char* gw = PyUnicode_AsUTF8AndSize(gateway, &gw_size)
    if not _expect(s, 123):
        return 1
    while True:
        begin = _string(s, &length)
        if begin == _GIVE_UP or not _expect(s, 58):
            return 1
        if _key(s, b"v", 1, begin, length):
            if seen & 1 or _int(s, &one) == _GIVE_UP or one != 1:
                return 1
            seen |= 1
        elif _key(s, b"gw", 2, begin, length):
            if seen & 2:
                return 1
            seen |= 2
            begin = _string(s, &length)
            if begin == _GIVE_UP or length != gw_size or memcmp(s.text + begin, gw, length):
                return 1
        elif _key(s, b"seq", 3, begin, length):
            if seen & 4 or _int(s, seq) == _GIVE_UP:
                return 1
            seen |= 4
        elif _key(s, b"readings", 8, begin, length):
            if seen & 8 or not _expect(s, 91):  # '['
                return 1
            seen |= 8
            if not _expect(s, 93):  # ']'
                while True:
                    if _scan_reading(s, meters, newest_ok, qualities, ok_at, out, &meter_hint):
                        return 1
                    if out.size > max_readings:
                        return 1
                    if _expect(s, 44):
                        continue
                    if _expect(s, 93):
                        break
                    return 1
        else:
            return 1
        if _expect(s, 44):
            continue
        if _expect(s, 125):
            break
        return 1
    _space(s)
    if seen != 15 or s.at != s.size:
        return 1
    return 0


# commit's buffer for a line, reused (see there)
cdef _Buf _commit_buf
_commit_buf.data = NULL
_commit_buf.size = _commit_buf.cap = 0
cdef bint _commit_busy = False


# a freelist: one is made per message scanned; no cyclic GC (it holds an int, a tuple of
# strs and meters by reference counts only, so it can be in no cycle), which kept each
# message's Scanned out of the collector's count and its young generation's passes
@cython.freelist(256)
@cython.no_gc
cdef class Scanned:
    """A message :func:`scan_message` found plainly valid: its ``seq``, and its readings in
    C, which :meth:`commit` puts through the counter watch and writes as lines. Ingest tracks
    the seq in between, so that a message dead-lettered there leaves the counter watch as it
    was, as on the reference path."""

    cdef readonly object seq
    cdef _Records out
    cdef tuple qualities
    cdef int ok_at, bad_at, decreased_at
    cdef bint committed

    def __cinit__(self):
        self.out.records = self.out.small_records
        self.out.size = 0
        self.out.cap = _SMALL_RECORDS
        self.out.values = self.out.small_values
        self.out.n_values = 0
        self.out.values_cap = _SMALL_VALUES

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.out.size):
            Py_DECREF(<object>self.out.records[i].meter)
        if self.out.records != self.out.small_records:
            PyMem_Free(self.out.records)
        if self.out.values != self.out.small_values:
            PyMem_Free(self.out.values)

    def commit(
        self, dict quality_field, dict last, frozenset counters, list not_counted,
        object decrease,
    ):
        """The counter watch (:func:`flag_counters`'s state and rules) over the readings, then
        their lines as :func:`encode_lines` writes them: (lines, values, newest time,
        decreases). Once only.

        What can fail for a reason of the arguments (a quality without its field in
        ``quality_field``, ``decrease`` among them) raises before the state changes;
        only running out of memory (the line's buffer, its str, a ``Decrease``) can stop it
        midway, with the state through the readings before — as :func:`flag_counters` and
        ``flag_py`` do."""
        cdef list lines = []
        cdef long long values_total = 0, newest = 0
        found = self._commit(
            quality_field, last, counters, not_counted, decrease, lines, &values_total, &newest
        )
        return lines, values_total, newest, [] if found is None else found

    cdef object _commit(
        self, dict quality_field, dict last, frozenset counters, list not_counted,
        object decrease, list lines, long long* values_out, long long* newest_out,
    ):
        """:meth:`commit`, its lines appended to ``lines`` (on a failure midway, those it
        appended taken out again), values and newest time in ``values_out`` and
        ``newest_out``; its decreases, or None for none (no list per message)."""
        cdef _Records* out = &self.out
        cdef tuple qualities = self.qualities
        cdef int ok_at = self.ok_at, bad_at = self.bad_at, decreased_at = self.decreased_at
        cdef long long newest = 0
        cdef Py_ssize_t i, j, k, size, values_total = 0
        cdef int quality
        cdef _Record* record
        cdef _Value* value
        cdef PyObject* got
        cdef PyObject* fields[16]
        cdef object meter, series, entry, before, key, newest_values, t_object
        cdef object found = None
        cdef Py_ssize_t lines_before = PyList_GET_SIZE(lines)
        cdef _Buf buf
        cdef bint own, went_back
        cdef char digits[32]
        cdef char* number
        global _commit_busy, _commit_buf
        if self.committed:
            raise RuntimeError("a scanned message goes through the counter watch once")
        if PyTuple_GET_SIZE(qualities) > 16:
            raise ValueError("at most 16 qualities")
        # only the fields the lines may need are looked up (decreased's, and the readings'
        # qualities but ok's): per message, a look-up for each quality cost a tenth of a scan
        for k in range(PyTuple_GET_SIZE(qualities)):
            fields[k] = NULL
        fields[decreased_at] = PyDict_GetItem(
            quality_field, <object>PyTuple_GET_ITEM(qualities, decreased_at)
        )
        # a quality without its field: the reference's KeyError, raised before any state
        # changes (``decreased``'s whether or not a counter goes back)
        if fields[decreased_at] is NULL:
            raise KeyError(<object>PyTuple_GET_ITEM(qualities, decreased_at))
        for i in range(out.size):
            quality = out.records[i].quality
            if quality != ok_at and fields[quality] is NULL:
                fields[quality] = PyDict_GetItem(
                    quality_field, <object>PyTuple_GET_ITEM(qualities, quality)
                )
                if fields[quality] is NULL:
                    raise KeyError(<object>PyTuple_GET_ITEM(qualities, quality))
        self.committed = True
        # the lines' buffer kept from one commit to the next (its block each time was a
        # tenth of a one-reading message's commit); a commit within one (it calls no code
        # that could, but nothing rules it out) takes a block of its own
        own = _commit_busy
        if own:
            buf.data = NULL
            buf.size = buf.cap = 0
        else:
            _commit_busy = True
            buf = _commit_buf
        try:
            t_object = None
            for i in range(out.size):
                record = &out.records[i]
                meter = <object>record.meter
                quality = record.quality
                series = meter.series
                if t_object is None or record.t != (record - 1).t:
                    t_object = PyLong_FromLongLong(record.t)
                if record.t > newest or i == 0:
                    newest = record.t
                values_total += record.count
                # the counter watch: flag_counters's rules, value by value
                if quality != bad_at:
                    got = PyDict_GetItem(last, series)
                    if got is NULL:
                        newest_values = {}
                        PyDict_SetItem(last, series, newest_values)
                    else:
                        newest_values = <object>got
                    for j in range(record.first, record.first + record.count):
                        value = &out.values[j]
                        key = <object>value.key
                        got = PyDict_GetItem(newest_values, key)
                        if got is NULL:
                            newest_values[key] = (
                                [t_object, value.v] if key in counters else not_counted
                            )
                            continue
                        entry = <object>got
                        if entry is not_counted or t_object <= entry[0]:
                            continue
                        before = entry[1]
                        entry[0] = t_object
                        entry[1] = value.v
                        # a float (nearly always) compared as a double, as Python would:
                        # no float object made for the compare, nor a bool for its result
                        if PyFloat_CheckExact(before):
                            went_back = value.v < PyFloat_AS_DOUBLE(before)
                        else:
                            went_back = value.v < before
                        if went_back:
                            if found is None:
                                found = []
                            found.append(decrease(meter.id, key, before, value.v))
                            if quality == ok_at:
                                quality = decreased_at
                # the line, as encode_lines writes it
                buf.size = 0
                _put_str(&buf, series)
                _put(&buf, " ", 1)
                for j in range(record.first, record.first + record.count):
                    value = &out.values[j]
                    if j != record.first:
                        _put(&buf, ",", 1)
                    _put_str(&buf, <object>value.key)
                    _put(&buf, "=", 1)
                    size = _short_decimal(value.v, digits)
                    if size:
                        _put(&buf, digits, size)
                    else:
                        number = PyOS_double_to_string(value.v, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
                        try:
                            _put(&buf, number, strlen(number))
                        finally:
                            PyMem_Free(number)
                if quality != ok_at:
                    _put_str(&buf, <object>fields[quality])
                _put(&buf, " ", 1)
                _put(&buf, digits, _decimal(record.t, digits))
                lines.append(PyUnicode_DecodeUTF8(buf.data, buf.size, NULL))
            values_out[0] = values_total
            newest_out[0] = newest
            return found
        except BaseException:
            # the chunk's list holds only whole messages' lines (a failed one is dead-lettered)
            del lines[lines_before:]
            raise
        finally:
            if own:
                PyMem_Free(buf.data)
            else:
                _commit_buf = buf  # grown, maybe
                _commit_busy = False


# the last qualities tuple scan_message was given and where ok, bad and decreased are in it
cdef object _qualities_seen = None
cdef int _ok_at = -1, _bad_at = -1, _decreased_at = -1


def scan_message(
    object payload, str gateway, object meters, long long newest_ok, Py_ssize_t max_readings,
    tuple qualities not None,
):
    """:func:`parkwatch.wire.plain_message` in one pass over the JSON text, with no Python
    object per reading: a :class:`Scanned` (its seq; :meth:`Scanned.commit` then runs the
    counter watch and :func:`encode_lines`) for a message it finds plainly valid, or None
    where it gives up — on anything off and on anything unusual (escapes or non-ASCII text,
    a key twice, the values before the meter, integers of more than 18 digits, "-0", numbers
    it cannot convert exactly). It changes no state; where it gives up the caller takes the
    reference path (``plain_message``'s msgspec decoding, the counter watch, the encoder),
    which says what is off. ``tests/test_hotpath_scan.py`` holds the two to the same lines,
    state and decreases. ``qualities``: the quality names, ``ok``, ``bad`` and ``decreased``
    among them."""
    if not PyBytes_CheckExact(payload) or not PyDict_CheckExact(meters):
        return None
    return _scan(<bytes>payload, gateway, <dict>meters, newest_ok, max_readings, qualities)


cdef object _scan(
    bytes payload, str gateway, dict meters, long long newest_ok, Py_ssize_t max_readings,
    tuple qualities,
):
    """:func:`scan_message` past its type checks."""
    cdef _Scan s
    cdef Scanned scanned
    cdef long long seq = 0
    cdef Py_ssize_t i
    cdef int ok_at = -1, bad_at = -1, decreased_at = -1
    cdef object name
    global _qualities_seen, _ok_at, _bad_at, _decreased_at
    if qualities is _qualities_seen:  # ingest passes the same tuple every time
        ok_at, bad_at, decreased_at = _ok_at, _bad_at, _decreased_at
    else:
        for i in range(PyTuple_GET_SIZE(qualities)):
            name = <object>PyTuple_GET_ITEM(qualities, i)
            if name == "ok":
                ok_at = i
            elif name == "bad":
                bad_at = i
            elif name == "decreased":
                decreased_at = i
        if ok_at < 0 or bad_at < 0 or decreased_at < 0:
            raise ValueError("qualities must name ok, bad and decreased")
        # a tuple cannot change: held here, its identity stands for these positions
        _qualities_seen = qualities
        _ok_at, _bad_at, _decreased_at = ok_at, bad_at, decreased_at
    s.text = <const unsigned char*>PyBytes_AS_STRING(payload)
    s.size = PyBytes_GET_SIZE(payload)
    s.at = 0
    scanned = Scanned.__new__(Scanned)
    if _scan_message(&s, gateway, meters, newest_ok, max_readings, qualities, ok_at,
                     &scanned.out, &seq):
        return None
    scanned.seq = PyLong_FromLongLong(seq)
    scanned.qualities = qualities
    scanned.ok_at, scanned.bad_at, scanned.decreased_at = ok_at, bad_at, decreased_at
    return scanned


# scan_run's own observe_next for a gateway's next numbers within one call: a call's messages
# share their arrival time, so after a gateway's first ones (SeqTracker.observe_next in
# Python: time went on, the pace may learn) its next numbers are observe_next's
# no-time-passed case — arithmetic on its run's lead and high alone, done here on C numbers
# and written back to the run before anything may look at it (any Python call, the call's
# end). At one reading per message the Python call was the largest cost left per message.
cdef enum:
    _SEEN_MAX = 16  # gateways kept per call

cdef struct _Seen:
    PyObject* key  # the source's seq key (a strong reference)
    PyObject* run  # its gateway's _Run once live, else NULL (a strong reference)
    PyObject* high  # the run's highest number, an int, once live (a strong reference)
    long long high_c
    double lead
    double within
    double pace_part  # MARGIN * (0.0 / every) where every is known
    # where every is known the lead follows the floats above; a quick run's paced room is
    # SLACK; a run that never moved in time (every None, not fast) has JUMP for its room,
    # whatever its lead: its lead after each next number is ``fixed`` (an int where JUMP is)
    int mode
    PyObject* fixed  # that lead (a strong reference), else NULL
    bint again  # seen before in this call: learnt after its next observe_next
    bint dirty  # high and lead not yet written to the run


cdef struct _SeqCache:
    _Seen seen[_SEEN_MAX]
    int size
    bint dirty  # some entry's high and lead not yet written back (else flushing is a no-op)
    bint took  # a number taken here since the cache was last cleared
    double slack
    double margin
    PyObject* jump  # the tracker's JUMP (borrowed: the tracker's class holds it)


cdef int _seq_flush(_SeqCache* cache) except -1:
    """The runs' high and lead as observe_next would have left them."""
    cdef int i
    cdef _Seen* one
    if not cache.dirty:  # flushed before every Python call: mostly nothing to write
        return 0
    for i in range(cache.size):
        one = &cache.seen[i]
        if one.dirty:
            one.dirty = False
            setattr(<object>one.run, "high", <object>one.high)
            setattr(<object>one.run, "lead", one.lead if one.fixed is NULL else <object>one.fixed)
    cache.dirty = False
    return 0


cdef void _seq_forget(_Seen* one):
    """Not live: its next number goes to observe_next in Python (flushed before)."""
    if one.run is not NULL:
        Py_DECREF(<object>one.run)
        Py_DECREF(<object>one.high)
        one.run = NULL
        one.high = NULL
    if one.fixed is not NULL:
        Py_DECREF(<object>one.fixed)
        one.fixed = NULL
    one.dirty = False


cdef int _seq_clear(_SeqCache* cache) except -1:
    cdef int i
    try:
        _seq_flush(cache)
    finally:
        for i in range(cache.size):
            _seq_forget(&cache.seen[i])
            Py_DECREF(<object>cache.seen[i].key)
        cache.size = 0
        cache.dirty = cache.took = False
    return 0


cdef _Seen* _seq_find(_SeqCache* cache, object key) except? NULL:
    """The entry of ``key`` (by identity: a source's key is one tuple), added if new; NULL
    where the cache is full of keys none of whose numbers were taken here (see scan_run)."""
    cdef int i
    cdef _Seen* one
    for i in range(cache.size):
        if cache.seen[i].key is <PyObject*>key:
            return &cache.seen[i]
    if cache.size == _SEEN_MAX:  # more gateways in a run than kept
        if not cache.took:
            return NULL
        _seq_clear(cache)  # some were taken here: start again
    one = &cache.seen[cache.size]
    Py_INCREF(key)
    one.key = <PyObject*>key
    one.run = one.high = one.fixed = NULL
    one.again = one.dirty = False
    cache.size += 1
    return one


cdef int _seq_learn(_SeqCache* cache, _Seen* one, dict gateways, object at) except -1:
    """After observe_next (in Python) took this key's number at ``at``: its run's state,
    live where observe_next's no-time-passed case can be done here with the same floats;
    else (a pace of 0, a room of JUMP (an int), a rival) its numbers stay with Python."""
    cdef PyObject* got = PyDict_GetItem(gateways, <object>one.key)
    cdef object gateway, run, rivals, high, lead, fast, quick, every, room, fixed = None
    cdef long long high_c
    cdef int overflow = 0
    cdef int i
    _seq_forget(one)
    if got is NULL:
        return 0
    gateway = <object>got
    rivals = gateway.rivals
    if type(rivals) is not list or len(<list>rivals) or gateway.last is not at:
        return 0
    run = gateway.run
    if run.at is not at or run.alone is not False:
        return 0
    high, lead, fast, quick, every = run.high, run.lead, run.fast, run.quick, run.every
    if not PyLong_CheckExact(high) or not PyLong_CheckExact(fast):
        return 0
    if not (quick is None or PyFloat_CheckExact(quick)):
        return 0
    high_c = PyLong_AsLongLongAndOverflow(high, &overflow)
    if overflow or high_c >= 9223372036854775806:
        return 0
    if every is None and not fast:
        # observe_next's objects: within is 0.0 (not fast), the room JUMP
        room = <object>cache.jump if <object>cache.jump > 0.0 else 0.0
        fixed = room - 1
        fixed = fixed if fixed > 0.0 else 0.0
        one.mode = 2
    elif every is None:  # a quick run: its paced room SLACK, whatever its lead
        one.mode = 1
    elif not PyFloat_CheckExact(lead):
        return 0
    elif PyFloat_CheckExact(every) and PyFloat_AS_DOUBLE(every) != 0.0:
        one.mode = 0
        one.pace_part = cache.margin * (0.0 / PyFloat_AS_DOUBLE(every))
    else:
        return 0
    # ``run.fast and run.quick``: quick None or a float (0.0 is false, NaN is not)
    if fast and quick is not None and PyFloat_AS_DOUBLE(quick) != 0.0:
        one.within = cache.slack + cache.margin * 0.0
    else:
        one.within = 0.0
    for i in range(cache.size):  # one live entry per run
        if cache.seen[i].run is <PyObject*>run:
            _seq_forget(&cache.seen[i])
    Py_INCREF(run)
    Py_INCREF(high)
    one.run = <PyObject*>run
    one.high = <PyObject*>high
    one.high_c = high_c
    if one.mode == 2:
        Py_INCREF(fixed)
        one.fixed = <PyObject*>fixed
    elif one.mode == 0:
        one.lead = PyFloat_AS_DOUBLE(lead)
    return 0


cdef inline bint _seq_next(_SeqCache* cache, _Seen* one, object seq):
    """observe_next's no-time-passed case on a live entry: True where ``seq`` is its next
    number (taken), else False with nothing changed."""
    cdef int overflow = 0
    cdef long long seq_c = PyLong_AsLongLongAndOverflow(seq, &overflow)
    cdef double paced, room, lead
    if overflow or seq_c != one.high_c + 1:
        return False
    # SeqTracker.observe_next's floats, in its order
    if one.mode == 0:
        paced = cache.slack + (one.lead - cache.slack) * 1.0 + one.pace_part
        room = paced if paced > one.within else one.within
        lead = room - <double>(seq_c - one.high_c)
        one.lead = lead if lead > 0.0 else 0.0
    elif one.mode == 1:
        paced = cache.slack
        room = paced if paced > one.within else one.within
        lead = room - <double>(seq_c - one.high_c)
        one.lead = lead if lead > 0.0 else 0.0
    one.high_c = seq_c
    Py_INCREF(seq)
    Py_DECREF(<object>one.high)
    one.high = <PyObject*>seq
    one.dirty = cache.dirty = cache.took = True
    return True


# where scan_run stopped, for the Python loop to take the message up (ingest.service._handle)
SCAN_FRESH = 0  # nothing done for it (or the chunk's end)
SCAN_GAVE_UP = 1  # the scan gave up on it: the reference decoding next
SCAN_SEQ = 2  # scanned; observe_next said no, so the seq tracker's full observe next
SCAN_SEQ_FAILED = 3  # scanned; observe_next raised
SCAN_COMMIT_FAILED = 4  # scanned and its seq tracked; the commit raised
# scan_run's arguments: 2 takes the seq tracker (parkwatch.hotpath runs an older build's loop
# in Python)
SCAN_RUN_VERSION = 2


def scan_run(
    list chunk, Py_ssize_t index, dict sources, Py_ssize_t max_bytes, long long newest_ok,
    Py_ssize_t max_readings, tuple qualities not None, tuple commit_args not None,
    object next_in_line, object at, list handled, list lines, object show_decreases,
    object tracker=None,
):
    """Ingest's common case for a run of a chunk's messages from ``index`` on, in one call:
    what ``_handle``'s loop does per message — the source by topic, :func:`scan_message`,
    ``next_in_line`` (the seq tracker's ``observe_next``) where the source tracks its seq,
    :meth:`Scanned.commit` (its lines appended to ``lines``), ``show_decreases`` where a
    counter went back, the message's entry appended to ``handled`` — in the same order, with
    the same calls, until a message needs more than that. Returns (index, stop, scanned,
    error, values, newest): the message the Python loop takes up (the chunk's length if none),
    how far this got with it (``SCAN_*``), its :class:`Scanned` and the exception where one
    stopped it, and the values and newest time of the lines appended.

    A source's ``scan`` is (gateway, meters, seq key or None) where its messages may be
    scanned, else None; ``commit_args`` are :meth:`Scanned.commit`'s. ``tracker``: the
    :class:`~ingest.sequence.SeqTracker` whose own ``observe_next`` is ``next_in_line``, or
    None — given, a gateway's next numbers after its first ones in the call are taken here
    (observe_next's no-time-passed case, the same floats), its run's ``high`` and ``lead``
    written back before any Python call and at the end."""
    cdef Py_ssize_t before, count
    cdef long long values_total = 0, newest_total = 0, values = 0, newest = 0
    cdef object message, topic, payload, source, fast, gateway, meters, key, got_scan, seq
    cdef object found, entry
    cdef Scanned scanned
    cdef PyObject* got
    cdef dict quality_field, last
    cdef frozenset counters
    cdef list not_counted
    cdef object decrease
    cdef bint taken
    cdef _SeqCache cache
    cdef _Seen* one = NULL
    cdef dict gateways = None
    cdef object slack, margin, jump = None  # jump: held here for the call
    cache.size = 0
    cache.dirty = cache.took = False
    if PyTuple_GET_SIZE(commit_args) != 5:
        raise ValueError("commit_args: Scanned.commit's five arguments")
    quality_field, last, counters, not_counted, decrease = commit_args
    if quality_field is None or last is None:
        raise TypeError("commit_args: the quality fields and the counter watch's state")
    if index < 0:
        raise ValueError("index: a position in the chunk")
    if tracker is not None:
        try:
            gateways = tracker._gateways
            slack, margin, jump = tracker.SLACK, tracker.MARGIN, tracker.JUMP
        except Exception:  # not the tracker this knows: its calls stay in Python
            gateways = None
        if type(gateways) is not dict:
            gateways = None
        elif PyFloat_CheckExact(slack) and PyFloat_CheckExact(margin) and PyLong_CheckExact(jump):
            cache.slack, cache.margin = PyFloat_AS_DOUBLE(slack), PyFloat_AS_DOUBLE(margin)
            cache.jump = <PyObject*>jump
        else:  # observe_next's floats are not these: its calls stay in Python
            gateways = None
    try:
        # the chunk's size read again every time: a callback (``next_in_line``, ``decrease``)
        # that shrank the list must not leave the loop reading past its end
        while index < PyList_GET_SIZE(chunk):
            message = <object>PyList_GET_ITEM(chunk, index)
            if not PyTuple_Check(message) or PyTuple_GET_SIZE(message) < 2:
                break
            topic = <object>PyTuple_GET_ITEM(message, 0)
            payload = <object>PyTuple_GET_ITEM(message, 1)
            if not PyUnicode_CheckExact(topic):
                break
            got = PyDict_GetItem(sources, topic)
            if got is NULL:
                break
            source = <object>got
            fast = source.scan
            if fast is None or not PyBytes_CheckExact(payload):
                break
            if PyBytes_GET_SIZE(payload) > max_bytes:
                break
            if not PyTuple_CheckExact(fast) or PyTuple_GET_SIZE(fast) != 3:
                break
            gateway = <object>PyTuple_GET_ITEM(fast, 0)
            meters = <object>PyTuple_GET_ITEM(fast, 1)
            key = <object>PyTuple_GET_ITEM(fast, 2)
            if not PyUnicode_CheckExact(gateway) or not PyDict_CheckExact(meters):
                break
            try:
                got_scan = _scan(<bytes>payload, <str>gateway, <dict>meters, newest_ok,
                                 max_readings, qualities)
            except Exception:
                break  # a bug: the Python loop meets it again and says so
            if got_scan is None:
                return index, SCAN_GAVE_UP, None, None, values_total, newest_total
            scanned = <Scanned>got_scan
            seq = scanned.seq
            if key is not None:
                one = NULL
                if gateways is not None:
                    one = _seq_find(&cache, key)
                    if one is NULL:
                        # more gateways interleaved than kept, none a third number in the
                        # call yet: Python's for the rest of it, not a cache cleared over
                        # and over (nothing is dirty: the clear writes nothing)
                        _seq_clear(&cache)
                        gateways = None
                    elif one.run is not NULL and _seq_next(&cache, one, seq):
                        key = None  # taken
                    else:
                        _seq_flush(&cache)  # Python next: the runs as observe_next left them
            if key is not None:
                try:
                    taken = bool(next_in_line(key, seq, at))
                except Exception as exc:
                    return index, SCAN_SEQ_FAILED, scanned, exc, values_total, newest_total
                if not taken:
                    return index, SCAN_SEQ, scanned, None, values_total, newest_total
                if one is not NULL:
                    # the first number of a gateway in the call may have moved time on; from
                    # its second one on, nothing but the no-time-passed case is left
                    if one.again:
                        try:
                            _seq_learn(&cache, one, gateways, at)
                        except Exception:  # a tracker this does not know: Python's numbers
                            _seq_forget(one)
                    one.again = True
            before = PyList_GET_SIZE(lines)
            try:
                found = scanned._commit(
                    quality_field, last, counters, not_counted, decrease, lines, &values, &newest
                )
            except Exception as exc:
                return index, SCAN_COMMIT_FAILED, scanned, exc, values_total, newest_total
            if found is not None:
                _seq_flush(&cache)
                show_decreases(found)
            count = PyList_GET_SIZE(lines) - before
            entry = (topic, payload, source, seq, count, values, newest)
            # nothing refers back to it (a tuple, only in handled): in no cycle, so the
            # collector need not visit it
            PyObject_GC_UnTrack(<PyObject*>entry)
            handled.append(entry)
            if count:
                values_total += values
                if newest > newest_total:
                    newest_total = newest
            index += 1
        return index, SCAN_FRESH, None, None, values_total, newest_total
    finally:
        _seq_clear(&cache)
