"""DL/T 645-2007, the Chinese multi-function electricity meter protocol: frames, data, maps.

A frame is ``FE… 68 A0..A5 68 C L DATA CS 16``: up to four ``FE`` wake-up bytes, the start
byte, the meter's address (12 BCD digits, low byte first — the number printed on the meter),
the start byte again, a control code (``0x11`` read data, ``0x13`` read address; the answer
sets bit 7, an error answer bit 6 too), the data length, the data with ``0x33`` added to every
byte, a checksum (the byte sum, mod 256, from the first ``68`` to the end of the data) and
``16``. Read requests carry a four-byte data identifier (DI, low byte first); the answer
repeats the DI and appends the value as packed BCD, low byte first, with a sign bit in the top
bit of the last byte for signed quantities (power, current, power factor).

Why this module and not the ``dlt645`` package (3.2.0, evaluated for this): the framing is a
few dozen lines, and the package is 24,000 lines around it that we would have to work against
— its client swallows every failure into ``None`` after logging it through loguru (a timeout,
a refused read and a checksum error all look alike, so a silent meter could not be told from
a wrong data identifier), it ships no type information, and it brings its own TCP and serial
transports, where the agent needs the shared, serialised bus connection it already has for
Modbus. The frames here are tested against captured exchanges (``tests/test_dlt645.py``).

A profile (``edge_agent/dlt645_maps/*.yaml``) lists the reads: a data identifier and the
values its answer carries, in order — one value for a plain identifier, several for a block
identifier (``0001FF00``: total energy then tariffs 1..n; ``0201FF00``: voltage of phases A,
B, C). Values mapped to the same quantity are averaged (three phase voltages → ``v_v``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum, IntFlag
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.profiles import NO_RATIOS, Ratio, Ratios
from edge_agent.yaml_maps import load_maps, pick
from parkwatch.quantities import QUANTITIES, Utility
from parkwatch.slugs import Slug

MAPS_DIR = Path(__file__).resolve().parent / "dlt645_maps"

START = 0x68
END = 0x16
WAKE_UP = b"\xfe\xfe\xfe\xfe"
BROADCAST = "AAAAAAAAAAAA"  # every meter on the bus answers: only for a bus with one meter
MAX_DATA = 200  # the standard's limit for a read answer's data field
_HEADER = 10  # 68 A0..A5 68 C L


class Dlt645Error(ValueError):
    """A frame or a value that does not follow the standard."""


class Control(IntEnum):
    """Function codes (the low five bits of the control byte)."""

    BROADCAST_TIME = 0x08
    READ_DATA = 0x11
    READ_FOLLOW_UP = 0x12
    READ_ADDRESS = 0x13


RESPONSE = 0x80  # bit 7: sent by the meter
ERROR = 0x40  # bit 6: an error answer; its one data byte is an ErrorWord
FOLLOWS = 0x20  # bit 5: more data follows (a read follow-up request fetches it)


class ErrorWord(IntFlag):
    """The error-answer status byte."""

    OTHER = 0x01
    NO_DATA = 0x02  # the meter has no such data identifier
    UNAUTHORISED = 0x04
    BAUD_RATE = 0x08
    YEAR_ZONES = 0x10
    DAY_PERIODS = 0x20
    TARIFFS = 0x40


# --- addresses and frames ----------------------------------------------------------------

_ADDRESS = re.compile(r"^[0-9A]{12}$")


def address_bytes(address: str) -> bytes:
    """``"000000000161"`` → ``61 01 00 00 00 00`` (low byte first); ``A`` digits stay
    ``A`` (the wildcard of broadcast and short addresses)."""
    if not _ADDRESS.match(address):
        raise Dlt645Error(f"a meter address is 12 digits (0-9, A as a wildcard): {address!r}")
    return bytes.fromhex(address)[::-1]


def address_text(raw: bytes) -> str:
    return raw[::-1].hex().upper()


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame; ``data`` without the ``0x33`` offset."""

    address: str
    control: int
    data: bytes = b""

    @property
    def function(self) -> int:
        return self.control & 0x1F

    @property
    def is_response(self) -> bool:
        return bool(self.control & RESPONSE)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ERROR)

    def encode(self, wake_up: bool = True) -> bytes:
        if len(self.data) > 255:
            raise Dlt645Error(f"{len(self.data)} data bytes: a frame carries at most 255")
        body = (
            bytes([START])
            + address_bytes(self.address)
            + bytes([START, self.control, len(self.data)])
            + bytes((b + 0x33) & 0xFF for b in self.data)
        )
        return (WAKE_UP if wake_up else b"") + body + bytes([checksum(body), END])


def decode_frame(buffer: bytes | bytearray) -> tuple[Frame | None, int]:
    """The first whole, valid frame in ``buffer`` and how many bytes it used up (wake-up
    bytes and noise before it included). ``(None, n)``: no frame yet; the first ``n`` bytes
    can be dropped (noise, or a corrupt frame), the rest may be the start of one."""
    start = 0
    size = len(buffer)
    while True:
        start = buffer.find(START, start)
        if start < 0:
            return None, size
        if size - start < _HEADER:
            return None, start
        if buffer[start + 7] != START:
            start += 1  # a 68 inside noise or an address, not a frame start
            continue
        length = buffer[start + 9]
        end = start + _HEADER + length + 2
        if size < end:
            return None, start
        body = bytes(buffer[start : end - 2])
        if buffer[end - 2] != checksum(body) or buffer[end - 1] != END:
            start += 1
            continue
        frame = Frame(
            address_text(body[1:7]),
            body[8],
            bytes((b - 0x33) & 0xFF for b in body[_HEADER:]),
        )
        return frame, end


def di_bytes(di: int) -> bytes:
    return di.to_bytes(4, "little")


def read_request(address: str, di: int) -> Frame:
    return Frame(address, Control.READ_DATA, di_bytes(di))


def read_address_request() -> Frame:
    return Frame(BROADCAST, Control.READ_ADDRESS)


class MeterRefused(Dlt645Error):  # noqa: N818 - it is an answer, not a failure of ours
    """The meter answered with an error status."""

    def __init__(self, status: int) -> None:
        self.status = ErrorWord(status & 0x7F)
        names = [f.name or "?" for f in ErrorWord if f in self.status] or [f"0x{status:02X}"]
        super().__init__(f"the meter refused: {', '.join(n.lower() for n in names)}")


def read_answer(frame: Frame, di: int) -> bytes:
    """The value bytes of an answer to ``read_request(…, di)``; raises :class:`MeterRefused`
    for an error answer and :class:`Dlt645Error` for an answer to something else."""
    if not frame.is_response or frame.function != Control.READ_DATA:
        raise Dlt645Error(f"not an answer to a read: control 0x{frame.control:02X}")
    if frame.is_error:
        raise MeterRefused(frame.data[0] if frame.data else 0)
    if frame.data[:4] != di_bytes(di):
        raise Dlt645Error(f"answer for DI {frame.data[:4][::-1].hex()}, asked {di:08X}")
    return frame.data[4:]


def read_data_answer(address: str, di: int, value: bytes, follows: bool = False) -> Frame:
    """A meter's answer (the simulator's side)."""
    control = RESPONSE | Control.READ_DATA | (FOLLOWS if follows else 0)
    return Frame(address, control, di_bytes(di) + value)


def read_address_answer(address: str) -> Frame:
    return Frame(address, RESPONSE | Control.READ_ADDRESS, address_bytes(address))


def error_answer(address: str, function: int, status: ErrorWord) -> Frame:
    return Frame(address, RESPONSE | ERROR | function, bytes([status]))


# --- values: packed BCD ------------------------------------------------------------------

_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


@functools.lru_cache(maxsize=64)
def parse_format(fmt: str) -> tuple[int, int]:
    """The standard's format notation → (bytes, decimals): ``XXXXXX.XX`` → (4, 2)."""
    match = _FORMAT.match(fmt)
    if match is None:
        raise Dlt645Error(f"a data format is X digits with an optional point: {fmt!r}")
    whole, fraction = match.group(1), match.group(2) or ""
    digits = len(whole) + len(fraction)
    if digits % 2:
        raise Dlt645Error(f"{fmt!r} has an odd number of digits")
    return digits // 2, len(fraction)


def decode_bcd(raw: bytes, fmt: str, signed: bool = False) -> float:
    """Packed BCD, low byte first; with ``signed`` the top bit of the last byte is the sign.
    A byte that is not BCD (``FF``: "no value") raises :class:`Dlt645Error`."""
    size, decimals = parse_format(fmt)
    if len(raw) != size:
        raise Dlt645Error(f"{fmt} takes {size} bytes, got {len(raw)}")
    data = bytearray(raw)
    negative = False
    if signed:
        negative = bool(data[-1] & 0x80)
        data[-1] &= 0x7F
    text = data[::-1].hex()
    if not text.isdigit():
        raise Dlt645Error(f"not BCD: {bytes(raw).hex(' ')}")
    value = Decimal(text).scaleb(-decimals)
    return float(-value if negative else value)


def encode_bcd(value: float, fmt: str, signed: bool = False) -> bytes:
    """The bytes a meter sends for ``value``; rounds to the format's step and saturates at
    its range, as the meter's own register does."""
    size, decimals = parse_format(fmt)
    digits = 2 * size
    top = 10**digits - 1
    if signed:
        top = 8 * 10 ** (digits - 1) - 1  # the sign takes the top bit: first digit 0..7
    scaled = round(abs(value) * 10**decimals) if math.isfinite(value) else 0
    scaled = min(scaled, top)
    data = bytearray(bytes.fromhex(f"{scaled:0{digits}d}")[::-1])
    if signed and value < 0 and scaled:
        data[-1] |= 0x80
    return bytes(data)


# --- the profile: what to read and how to read it ------------------------------------------

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Dlt645Value(BaseModel):
    """One value of a read's answer, in answer order; ``quantity: null`` skips it."""

    model_config = _STRICT

    quantity: str | None
    format: str  # the standard's notation: XXXXXX.XX, XXX.X, XX.XXXX, …
    signed: bool = False  # the top bit is a sign (power, current, power factor)
    scale: Annotated[float, Field(gt=0)] = 1.0
    ratio: Ratio = Ratio.NONE
    doc: str = ""

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        parse_format(value)
        return value

    @property
    def size(self) -> int:
        return parse_format(self.format)[0]

    def decode(self, raw: bytes, ratios: Ratios = NO_RATIOS) -> float:
        value = Decimal(repr(decode_bcd(raw, self.format, self.signed)))
        factor = Decimal(repr(self.scale)) * Decimal(repr(ratios.factor(self.ratio)))
        return float(value * factor)

    def encode(self, value: float, ratios: Ratios = NO_RATIOS) -> bytes:
        return encode_bcd(
            value / (self.scale * ratios.factor(self.ratio)), self.format, self.signed
        )

    def modulus(self, ratios: Ratios = NO_RATIOS) -> float:
        """Where the register wraps to zero (a counter's rollover), in quantity units."""
        size, decimals = parse_format(self.format)
        return float(10 ** (2 * size - decimals) * self.scale * ratios.factor(self.ratio))


class Dlt645Read(BaseModel):
    """One read request: a data identifier (8 hex digits as the standard writes them) and
    the values its answer carries. A block identifier's answer may end early (a meter with
    two tariffs answers three energies to ``0001FF00``): the values not sent are absent."""

    model_config = _STRICT

    di: str
    values: tuple[Dlt645Value, ...]

    @field_validator("di", mode="before")
    @classmethod
    def _di(cls, value: object) -> object:
        if isinstance(value, str) and re.fullmatch(r"[0-9A-Fa-f]{8}", value):
            return value.upper()
        if isinstance(value, int):
            # YAML reads 02030000 as an octal number: the identifier would silently change
            raise ValueError(f"write the data identifier in quotes, e.g. '02030000' (got {value})")
        raise ValueError(f"a data identifier is 8 hex digits, e.g. '00010000': {value!r}")

    @property
    def code(self) -> int:
        return int(self.di, 16)

    @property
    def size(self) -> int:
        return sum(v.size for v in self.values)

    def decode(self, raw: bytes, ratios: Ratios = NO_RATIOS) -> dict[str, float]:
        """The quantities in an answer; a value that is not BCD is left out, never guessed.
        Several values of one quantity (the phases) are averaged."""
        sums: dict[str, list[float]] = {}
        offset = 0
        for value in self.values:
            part = raw[offset : offset + value.size]
            offset += value.size
            if len(part) < value.size:
                break  # a shorter block answer: the meter has fewer of these
            if value.quantity is None:
                continue
            try:
                sums.setdefault(value.quantity, []).append(value.decode(part, ratios))
            except Dlt645Error:
                continue
        return {q: _mean(vs) for q, vs in sums.items()}

    def encode(self, values: Mapping[str, float], ratios: Ratios = NO_RATIOS) -> bytes:
        """The simulated meter's answer: a quantity without a value is sent as ``FF`` bytes
        (not BCD, so read as "no value")."""
        out = bytearray()
        for value in self.values:
            given = values.get(value.quantity) if value.quantity else 0.0
            out += b"\xff" * value.size if given is None else value.encode(given, ratios)
        return bytes(out)


def _mean(values: Sequence[float]) -> float:
    if len(values) == 1:
        return values[0]
    return float(Decimal(sum(Decimal(repr(v)) for v in values)) / len(values))


class Dlt645Profile(BaseModel):
    """A DL/T 645-2007 meter product: the reads that give its quantities."""

    model_config = _STRICT

    protocol: Literal["dlt645"]
    name: Slug
    vendor: str
    model: str
    utility: Literal[Utility.ELECTRICITY] = Utility.ELECTRICITY
    source: str = ""
    source_version: str = ""  # the cited document's version or date, as printed on it
    illustrative: bool = False  # a layout of our own, not from a product manual
    reads: tuple[Dlt645Read, ...]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.reads:
            raise ValueError("a profile has at least one read")
        owner: dict[str, str] = {}
        for read in self.reads:
            if read.size > MAX_DATA - 4:
                raise ValueError(f"DI {read.di}: {read.size} bytes is more than one answer holds")
            for value in read.values:
                q = value.quantity
                if q is None:
                    continue
                known = QUANTITIES.get(q)
                if known is None:
                    raise ValueError(f"unknown quantity {q!r}")
                if self.utility not in known.utilities:
                    raise ValueError(f"{q!r} is not a quantity of a {self.utility} meter")
                # one quantity, one read: averaging across requests would mix moments
                if owner.setdefault(q, read.di) != read.di:
                    raise ValueError(f"{q!r} is read by both DI {owner[q]} and DI {read.di}")
        return self

    @property
    def quantities(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for read in self.reads:
            for value in read.values:
                if value.quantity is not None:
                    seen[value.quantity] = None
        return tuple(seen)

    def counter_moduli(self, ratios: Ratios = NO_RATIOS) -> dict[str, float]:
        """Counter quantity → the value at which it rolls over to zero."""
        out: dict[str, float] = {}
        for read in self.reads:
            for value in read.values:
                q = value.quantity
                if q is not None and QUANTITIES[q].is_counter:
                    out[q] = value.modulus(ratios)
        return out


class Dlt645ProfileError(ValueError):
    """A DL/T 645 map is malformed, or a named one does not exist."""


def load_dlt645_profiles(directories: Iterable[Path]) -> dict[str, Dlt645Profile]:
    return load_maps(Dlt645Profile, directories, Dlt645ProfileError, "DL/T 645 map")


@functools.cache
def builtin_dlt645_profiles() -> Mapping[str, Dlt645Profile]:
    return load_dlt645_profiles([MAPS_DIR])


def get_dlt645_profile(
    name: str, extra: Mapping[str, Dlt645Profile] | None = None
) -> Dlt645Profile:
    maps = {**builtin_dlt645_profiles(), **(extra or {})}
    return pick(maps, name, Dlt645ProfileError, "DL/T 645 profile")


def wire_bytes(frame_data: int, wake_up: bool = True) -> int:
    """Bytes on the line for a frame with ``frame_data`` data bytes."""
    return (len(WAKE_UP) if wake_up else 0) + _HEADER + frame_data + 2


def read_cost_s(
    read: Dlt645Read, baudrate: int, bits_per_byte: int = 11, turnaround_s: float = 0.0
) -> float:
    """Time a read holds the bus: the request, the meter's turnaround, the answer. DL/T 645
    sends 11 bits a byte (start, 8 data, even parity, stop)."""
    request = wire_bytes(4)
    answer = wire_bytes(4 + read.size)
    return (request + answer) * bits_per_byte / baudrate + turnaround_s
