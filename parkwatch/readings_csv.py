"""The replay file format: readings as ``time,meter,quantity,value`` CSV, one value per row.

``time`` is epoch milliseconds (UTC) or ISO 8601 with a UTC offset (``2024-11-25T08:00:00+08:00``,
``…Z``); ``value`` is a number in the quantity's registry unit. The header row is required; its
columns may come in any order (names are matched without regard to case or surrounding spaces;
other columns are ignored), the file may start with a UTF-8 byte-order mark and may be gzip'd
(recognised by its first bytes, whatever its name).

:func:`read_readings` reads a whole file into columns (:class:`Readings`: numpy arrays of time,
meter and quantity codes, and values) in file order. A row that cannot be used is never dropped
silently: it is listed in ``bad_rows`` with its line number and why (a time that does not parse,
a time without an offset, a time before 2000 — seconds given as milliseconds —, an empty meter or
quantity, an empty, non-numeric or non-finite value, fields missing or too many, an empty line),
and the good rows are kept. A file that is not a readings file at all (no header, a required
column missing) raises :class:`ReadingsFormatError` with one message that says what is missing.

Speed: pyarrow's multi-threaded CSV reader parses the file in C++; the columns are converted
with vectorised casts, and only a cast that fails is narrowed down (by halves) to the rows that
make it fail. A file whose times are epoch milliseconds is first read with its types declared,
which is the fastest path; any conversion error sends it down the general path that reads every
field as text. The figures are in the README (``parkwatch bench replay-read``).

:class:`ReadingsWriter` writes the format: the header, then blocks of rows formatted by
:class:`CsvBlocks` without a Python loop per row, gzip'd in a second thread.
"""

from __future__ import annotations

import csv
import gzip
import io
import queue
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]
U8Array = npt.NDArray[np.uint8]

COLUMNS = ("time", "meter", "quantity", "value")
HEADER = b"time,meter,quantity,value\n"
MIN_TIME_MS = 946_684_800_000  # 2000-01-01T00:00Z: earlier is seconds sent as milliseconds
_GZIP_MAGIC = b"\x1f\x8b"
_Flagger = Callable[["BoolArray | None", str], None]
_BOM = "\ufeff"


class ReadingsFormatError(ValueError):
    """The file is not a readings CSV (no header, or a required column missing)."""


@dataclass(frozen=True)
class BadRow:
    line: int  # 1-based line of the file; the header is line 1
    reason: str


@dataclass
class Readings:
    """A readings file as columns, in file order; row ``i`` is ``meters[meter_code[i]]``,
    ``quantities[quantity_code[i]]`` at ``t_ms[i]`` with ``value[i]``, from line ``line[i]``
    of the file (for whoever reports on a row later: an unknown meter, say)."""

    t_ms: IntArray
    meter_code: CodeArray
    meters: Sequence[str]
    quantity_code: CodeArray
    quantities: Sequence[str]
    value: FloatArray
    line: IntArray
    bad_rows: list[BadRow] = field(default_factory=list)
    rows: int = 0  # data rows in the file, good and bad

    def __len__(self) -> int:
        return int(self.t_ms.size)

    def time_order(self) -> IntArray:
        """Row indexes in time order (stable: rows with the same time keep file order)."""
        order: IntArray = np.argsort(self.t_ms, kind="stable")
        return order


# --- reading --------------------------------------------------------------------------------


def read_readings(path: Path | str, *, finite: bool = True) -> Readings:
    """Reads a whole readings CSV (see the module docstring). ``finite``: NaN and ±∞ values
    are bad rows, as the platform's ingest rejects them; False keeps them (a simulated
    history's word-swapped floats)."""
    path = Path(path)
    names, first_time = _header(path)
    if first_time is not None and first_time.isascii() and first_time.isdigit():
        try:
            return _read(path, names, typed=True, finite=finite)
        except pa.ArrowInvalid:
            pass  # a value or time that is not what the first row promised: read it as text
    try:
        return _read(path, names, typed=False, finite=finite)
    except pa.ArrowInvalid as exc:  # what even text cannot hold: bytes that are not UTF-8
        raise ReadingsFormatError(f"{path}: not a UTF-8 CSV file ({exc})") from exc


def _packed(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if _packed(path) else open(path, "rb")


def _stream(path: Path) -> pa.NativeFile:
    """The file for pyarrow's reader: Arrow's own gzip stream decompresses in its I/O thread
    while the parser works (twice as fast as Python's gzip module, measured)."""
    raw = pa.OSFile(str(path), "rb")
    return pa.CompressedInputStream(raw, "gzip") if _packed(path) else raw


def _header(path: Path) -> tuple[list[str], str | None]:
    """The normalised column names, and the first data row's time field (None: no data)."""
    with _open(path) as raw:
        try:
            lines = [raw.readline().decode("utf-8"), raw.readline().decode("utf-8")]
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise ReadingsFormatError(f"{path}: not a UTF-8 CSV file ({exc})") from exc
    head = lines[0].removeprefix(_BOM)
    if not head.strip():
        raise ReadingsFormatError(f"{path}: empty file; expected the header {_header_text()}")
    names = [n.strip().lower() for n in next(csv.reader([head]))]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise ReadingsFormatError(
            f"{path}: the header has no {', '.join(repr(m) for m in missing)} column"
            f"{'s' if len(missing) > 1 else ''}: found {head.strip()!r}, expected the columns "
            f"{_header_text()} (in any order"
            f"{', separated by commas' if ';' in head or chr(9) in head else ''})"
        )
    twice = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
    if twice:
        raise ReadingsFormatError(f"{path}: column {twice[0]!r} appears twice in the header")
    first = next(csv.reader([lines[1]]), []) if lines[1].strip() else []
    at = names.index("time")
    return names, (first[at].strip() if at < len(first) else None)


def _header_text() -> str:
    return HEADER.decode().strip()


def _read(path: Path, names: list[str], *, typed: bool, finite: bool) -> Readings:
    """One pass of pyarrow's reader; ``typed`` declares epoch-ms times and float values."""
    ragged: list[tuple[int | None, int, int]] = []  # (line, expected, actual) of ragged rows

    def on_ragged(row: pa_csv.InvalidRow) -> str:
        ragged.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"

    text = pa.string()
    types: dict[str, pa.DataType] = dict.fromkeys(COLUMNS, text)
    if typed:
        code = pa.dictionary(pa.int32(), pa.string())
        types = {"time": pa.int64(), "meter": code, "quantity": code, "value": pa.float64()}

    def load(threads: bool) -> pa.Table:
        ragged.clear()
        with _stream(path) as raw:
            return pa_csv.read_csv(
                raw,
                read_options=pa_csv.ReadOptions(
                    use_threads=threads, column_names=names, skip_rows=1
                ),
                parse_options=pa_csv.ParseOptions(
                    invalid_row_handler=on_ragged, ignore_empty_lines=False
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types=types,
                    include_columns=list(COLUMNS),
                    null_values=[""],  # pyarrow's default also takes "nan" and "NULL" for null
                    strings_can_be_null=False,
                ),
            )

    table = load(threads=True)
    if any(line is None for line, _, _ in ragged):
        table = load(threads=False)  # pyarrow numbers a skipped row only when reading in order
    skipped = np.array(sorted(line or 0 for line, _, _ in ragged), dtype=np.int64)
    n = table.num_rows
    bad: dict[int, list[str]] = {}  # table row -> reasons

    def flag(mask: BoolArray | None, reason: str) -> None:
        if mask is not None:
            for i in np.flatnonzero(mask).tolist():
                bad.setdefault(i, []).append(reason)

    def take(name: str) -> pa.ChunkedArray:
        """A column, dropped from the table so that its memory goes once it is converted."""
        nonlocal table
        column = table[name]
        table = table.drop_columns([name])
        return column

    if typed:
        t_ms, t_bad = _numbers(take("time"), np.int64)
        value, v_bad = _numbers(take("value"), np.float64)
        t_ms, value = t_ms.astype(np.int64, copy=False), value.astype(np.float64, copy=False)
        meter, meter_names = _codes(take("meter"))
        quantity, quantity_names = _codes(take("quantity"))
        blank = t_bad & v_bad & _empty(meter, meter_names) & _empty(quantity, quantity_names)
        flag(blank, "empty line")
        flag(t_bad & ~blank, "empty time")
        flag(v_bad & ~blank, "empty value")
    else:
        columns = {c: pc.utf8_trim_whitespace(take(c).combine_chunks()) for c in COLUMNS}
        empty = {c: _is_empty(columns[c]) for c in COLUMNS}
        blank = empty["time"] & empty["meter"] & empty["quantity"] & empty["value"]
        flag(blank, "empty line")
        t_ms = _times(columns["time"], empty["time"], blank, flag)
        value = _values(columns["value"], empty["value"], blank, flag)
        meter, meter_names = _codes(columns["meter"])
        quantity, quantity_names = _codes(columns["quantity"])
    flag(_empty(meter, meter_names) & ~blank, "empty meter")
    flag(_empty(quantity, quantity_names) & ~blank, "empty quantity")
    flag((t_ms < MIN_TIME_MS) & ~_has(bad, n), "time before 2000 (seconds, not milliseconds?)")
    if finite:
        for i in np.flatnonzero(~np.isfinite(value) & ~_has(bad, n)).tolist():
            bad.setdefault(i, []).append(f"value {value[i]} is not a finite number")

    good = ~_has(bad, n) if bad else slice(None)  # (no copies of a clean file's columns)
    lines = _lines(np.arange(n, dtype=np.int64), skipped) if skipped.size else np.arange(2, n + 2)
    bad_rows = [BadRow(int(lines[i]), "; ".join(why)) for i, why in bad.items()]
    bad_rows += [
        BadRow(line or 0, f"{actual} fields where the header has {expected}")
        for line, expected, actual in ragged
    ]
    bad_rows.sort(key=lambda b: b.line)
    meter, meters = _compact(meter[good], meter_names)
    quantity, quantities = _compact(quantity[good], quantity_names)
    return Readings(
        t_ms=np.ascontiguousarray(t_ms[good]),
        meter_code=meter,
        meters=meters,
        quantity_code=quantity,
        quantities=quantities,
        value=np.ascontiguousarray(value[good]),
        line=np.ascontiguousarray(lines[good]),
        bad_rows=bad_rows,
        rows=n + len(ragged),
    )


def _lines(rows: IntArray, skipped: IntArray) -> IntArray:
    """The file lines of table rows: rows count from line 2, past the skipped lines."""
    # each skipped line moves every later row one line down
    at = skipped - 2 - np.arange(skipped.size)  # the row index each skipped line stands before
    out: IntArray = rows + 2 + np.searchsorted(at, rows, side="right")
    return out


def _has(bad: dict[int, list[str]], n: int) -> BoolArray:
    out = np.zeros(n, dtype=bool)
    if bad:
        out[np.fromiter(bad, dtype=np.int64, count=len(bad))] = True
    return out


def _numbers(
    column: pa.ChunkedArray, dtype: type[np.generic]
) -> tuple[npt.NDArray[Any], BoolArray]:
    """A typed numeric column as numpy (nulls as 0) and where it was empty."""
    if column.null_count == 0:
        return column.to_numpy().astype(dtype, copy=False), np.zeros(len(column), dtype=bool)
    missing = column.is_null().to_numpy()
    values = column.fill_null(0).to_numpy().astype(dtype, copy=False)
    return values, missing


def _codes(column: pa.ChunkedArray | pa.Array) -> tuple[CodeArray, list[str]]:
    """Dictionary codes (int32) and the names they stand for."""
    if isinstance(column, pa.ChunkedArray):
        column = column.unify_dictionaries() if pa.types.is_dictionary(column.type) else column
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    codes = column.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    names = [str(name).strip() for name in column.dictionary.to_pylist()]
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):  # " m1" and "m1" are one meter
        number = {name: k for k, name in enumerate(unique)}
        codes = np.array([number[name] for name in names], dtype=np.int32)[codes]
    return codes, unique


def _empty(codes: CodeArray, names: list[str]) -> BoolArray:
    blank = np.array([name == "" for name in names], dtype=bool)
    if not blank.any():
        return np.zeros(codes.size, dtype=bool)
    out: BoolArray = blank[codes]
    return out


def _is_empty(array: pa.Array) -> BoolArray:
    out: BoolArray = pc.equal(pc.utf8_length(array), 0).to_numpy(zero_copy_only=False)
    return out


def _compact(codes: CodeArray, names: list[str]) -> tuple[CodeArray, list[str]]:
    """Drops the names no good row uses (the bad rows' empty or stray names)."""
    used = np.zeros(len(names), dtype=bool)
    used[codes] = True
    if used.all():
        return codes, names
    renumber = np.cumsum(used, dtype=np.int32) - 1
    return renumber[codes], [n for n, keep in zip(names, used, strict=True) if keep]


def _cast(array: pa.Array, to: pa.DataType) -> tuple[pa.Array, BoolArray]:
    """``array`` cast to ``to``, with a null (and True in the mask) where an element does not
    convert: a failing cast is split in halves until the failing elements are alone."""
    try:
        return pc.cast(array, to), np.zeros(len(array), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(array) == 1:
            return pa.nulls(1, to), np.ones(1, dtype=bool)
    half = len(array) // 2
    left, left_bad = _cast(array.slice(0, half), to)
    right, right_bad = _cast(array.slice(half), to)
    return pa.concat_arrays([left, right]), np.concatenate([left_bad, right_bad])


def _values(array: pa.Array, empty: BoolArray, blank: BoolArray, flag: _Flagger) -> FloatArray:
    flag(empty & ~blank, "empty value")
    converted, failed = _cast(array, pa.float64())
    failed &= ~empty
    if failed.any():
        for i in np.flatnonzero(failed).tolist():
            flag(_one(i, empty.size), f"value {array[i].as_py()!r} is not a number")
    out: FloatArray = converted.fill_null(0.0).to_numpy(zero_copy_only=False)
    return out


def _times(array: pa.Array, empty: BoolArray, blank: BoolArray, flag: _Flagger) -> IntArray:
    """Epoch milliseconds from epoch-ms digits or ISO 8601 with an offset (finer than a
    millisecond: floored). ``blank``: empty lines, already flagged."""
    flag(empty & ~blank, "empty time")
    digits = pc.ascii_is_decimal(array).to_numpy(zero_copy_only=False) & ~empty
    out = np.zeros(len(array), dtype=np.int64)
    if digits.any():
        chosen = np.flatnonzero(digits)
        numbers, failed = _cast(array.take(pa.array(chosen)), pa.int64())
        out[chosen] = numbers.fill_null(0).to_numpy(zero_copy_only=False)
        for i in chosen[failed].tolist():
            flag(_one(i, out.size), f"time {array[i].as_py()!r} is too large for epoch ms")
    iso = ~digits & ~empty
    if iso.any():
        chosen = np.flatnonzero(iso)
        # RFC 3339 allows a lowercase "t" and "z", which Arrow's parser refuses; upper case
        # changes nothing else a valid time holds
        texts = pc.utf8_upper(array.take(pa.array(chosen)))
        stamps, failed = _cast(texts, pa.timestamp("ns", tz="UTC"))
        ns = pc.cast(stamps, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        out[chosen] = ns // 1_000_000
        for i in chosen[failed].tolist():
            flag(_one(i, out.size), _why_not_a_time(str(array[i].as_py())))
    return out


def _why_not_a_time(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        return f"time {text!r} is neither epoch milliseconds nor ISO 8601"
    if moment.tzinfo is None:
        return f"time {text!r} has no UTC offset (add one, e.g. +08:00 or Z)"
    return f"time {text!r} is not in a form this reader takes (ISO 8601: 2024-11-25T08:00:00+08:00)"


def _one(i: int, n: int) -> BoolArray:
    mask = np.zeros(n, dtype=bool)
    mask[i] = True
    return mask


# --- writing -------------------------------------------------------------------------------

INT_DIGITS = 10  # the fast path writes values below 1e10; others go through "%.9g"
TIME_DIGITS = 13  # epoch ms has 13 digits from 2001-09-09 to 2286-11-20
_MIN_MS, _MAX_MS = 10**12, 10**13


class CsvBlocks:
    """Formats blocks of values of known series as replay CSV rows, vectorised.

    ``series`` are (meter, quantity) pairs and ``decimals`` each one's digits after the point.
    A block is a ``[time, series]`` matrix of values, which becomes CSV text as one byte matrix
    (``[time, series, characters]``) from which a boolean mask keeps the characters that exist:
    no row is formatted in Python. A value no register would show (non-finite, beyond 1e10, or
    non-zero but too small for its decimals) is written ``%.9g``.
    """

    def __init__(self, series: Sequence[tuple[str, str]], decimals: IntArray) -> None:
        prefixes = [f",{m},{q},".encode() for m, q in series]
        width = max(len(p) for p in prefixes)
        self.prefix = np.zeros((len(series), width), dtype=np.uint8)
        self.prefix_mask = np.zeros((len(series), width), dtype=bool)
        for i, p in enumerate(prefixes):
            self.prefix[i, : len(p)] = np.frombuffer(p, dtype=np.uint8)
            self.prefix_mask[i, : len(p)] = True
        self.decimals = decimals.astype(np.int64)
        self.frac_digits = max(1, int(self.decimals.max()))
        self.scale = 10.0**self.decimals
        self.unit = (10**self.decimals).astype(np.int64)

    def format(
        self,
        t_ms: IntArray,
        values: FloatArray,
        present: BoolArray | None = None,
        t_offset_ms: IntArray | None = None,
        columns: IntArray | None = None,
    ) -> tuple[bytes, IntArray]:
        """CSV text of ``values[time, series]`` (``columns``: which series they are, default
        all); returns the text and the byte offset where each time's rows end."""
        cols = np.arange(values.shape[1]) if columns is None else columns
        n_t, n_s = values.shape
        prefix, prefix_mask = self.prefix[cols], self.prefix_mask[cols]
        dec = self.decimals[cols]
        fw = self.frac_digits
        pw = prefix.shape[1]
        vw = 1 + INT_DIGITS + 1 + fw  # sign, integer digits, point, fraction
        width = TIME_DIGITS + pw + vw + 1
        mat = np.empty((n_t, n_s, width), dtype=np.uint8)
        keep = np.empty((n_t, n_s, width), dtype=bool)

        # time: the same digits for every series unless a clock is skewed
        if t_offset_ms is not None and t_offset_ms.any():
            stamps = t_ms[:, None] + t_offset_ms
            mat[:, :, :TIME_DIGITS] = _digits(stamps, TIME_DIGITS)
        else:
            stamps = t_ms
            mat[:, :, :TIME_DIGITS] = _digits(t_ms, TIME_DIGITS)[:, None, :]
        if stamps.min() < _MIN_MS or stamps.max() >= _MAX_MS:
            raise ValueError("timestamps outside 2001-2286 do not have 13 digits")
        keep[:, :, :TIME_DIGITS] = True
        o = TIME_DIGITS
        mat[:, :, o : o + pw] = prefix[None]
        keep[:, :, o : o + pw] = prefix_mask[None]
        o += pw

        # value: fixed-point digits from integers, so no float is ever printed in Python
        with np.errstate(invalid="ignore", over="ignore"):
            magnitude = np.abs(values)
            odd = ~np.isfinite(values) | (magnitude >= 10.0**INT_DIGITS)
            scaled = np.where(odd, 0.0, magnitude) * self.scale[cols]
        k = np.rint(scaled).astype(np.int64)
        odd |= (k == 0) & (magnitude > 0)  # would print as 0: a value no register shows
        unit = self.unit[cols]
        whole = k // unit
        frac = (k - whole * unit) * (10 ** (fw - dec)).astype(np.int64)
        mat[:, :, o] = ord("-")
        keep[:, :, o] = (values < 0) & (k > 0)
        o += 1
        mat[:, :, o : o + INT_DIGITS] = _digits(whole, INT_DIGITS)
        for j in range(INT_DIGITS - 1):  # no leading zeros...
            keep[:, :, o + j] = whole >= 10 ** (INT_DIGITS - 1 - j)
        keep[:, :, o + INT_DIGITS - 1] = True  # ...but one before the point: "0.5"
        o += INT_DIGITS
        mat[:, :, o] = ord(".")
        keep[:, :, o] = (dec > 0)[None, :]
        o += 1
        mat[:, :, o : o + fw] = _digits(frac, fw)
        keep[:, :, o : o + fw] = (np.arange(fw)[None, :] < dec[:, None])[None]
        o += fw
        mat[:, :, o] = ord("\n")
        keep[:, :, o] = True

        if odd.any():  # rare: word-swapped floats and the like
            start = TIME_DIGITS + pw
            for r, c in zip(*np.nonzero(odd), strict=True):
                text = np.frombuffer(f"{values[r, c]:.9g}".encode(), dtype=np.uint8)
                mat[r, c, start : start + text.size] = text
                keep[r, c, start : start + vw] = False
                keep[r, c, start : start + text.size] = True
        if present is not None:
            keep &= present[:, :, None]
        ends = np.cumsum(keep.reshape(n_t, -1).sum(axis=1, dtype=np.int64))
        return mat[keep].tobytes(), ends


def _digits(x: IntArray, width: int) -> U8Array:
    """ASCII decimal digits of non-negative integers, most significant first, zero-padded."""
    out = np.empty((*x.shape, width), dtype=np.uint8)
    rest = x.copy()
    for j in range(width - 1, -1, -1):
        q = rest // 10
        out[..., j] = rest - q * 10
        rest = q
    out += ord("0")
    return out


class ReadingsWriter:
    """Writes a readings file: the header, then the text given to :meth:`write` (rows from
    :class:`CsvBlocks`), gzip'd (level 1) when ``gzip``. Compression and the disk run in a
    thread of their own, fed through a short queue, since zlib releases the GIL."""

    def __init__(self, path: Path | str, gzip: bool) -> None:
        self.path = Path(path)
        self.gzip = gzip
        self.bytes = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._file: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._thread = threading.Thread(target=self._run, name="readings-writer", daemon=True)
        self._thread.start()
        self.write(HEADER)

    def __enter__(self) -> ReadingsWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if data:
            self.bytes += len(data)
            self._queue.put(data)

    def _run(self) -> None:
        try:
            packer = zlib.compressobj(1, zlib.DEFLATED, 31) if self.gzip else None  # 31: gzip
            while (data := self._queue.get()) is not None:
                self._file.write(packer.compress(data) if packer else data)
            if packer is not None:
                self._file.write(packer.flush())
        except BaseException as exc:  # reported to the producer on its next write or close
            self._error = exc
            while self._queue.get() is not None:  # drain so the producer never blocks
                pass

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._file.close()
        if self._error is not None:
            raise self._error
