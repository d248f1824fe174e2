"""``parkwatch edge probe``: find how an unknown or misconfigured Modbus meter must be read.

Given a link (TCP endpoint or serial line), a unit id and a profile, the probe reads the
profile's registers at the mapped addresses and one register either side (manuals that count
from 1 against PDU addresses that count from 0 are the classic off-by-one), decodes each
value in the four byte and word orders of a 32-bit value (ABCD, CDAB, BADC, DCBA), and
scores every combination by how plausible its values are for their quantities: a voltage
between 50 and 500 V, a frequency between 45 and 65 Hz, a power factor within ±1, counters
that are not negative and do not go down between two reads, nothing absurdly large or
tiny. The best combination is the reading to configure; the report says what to change.

``scan_units`` asks each unit id of a range for one register: a unit that answers — even
with a Modbus exception — is there.

Probing only reads. It goes through the same :class:`~edge_agent.drivers.ModbusLink` as the
agent, one request at a time.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from edge_agent.drivers import (
    MeterReadError,
    MeterRefusedError,
    MeterTimeoutError,
    ModbusLink,
)
from edge_agent.profiles import DataType, Function, MeterProfile, RegisterSpec
from parkwatch.quantities import QUANTITIES

OFFSETS = (0, -1, 1)


class Order(StrEnum):
    """Byte order of a multi-word value: A is the most significant byte."""

    ABCD = "ABCD"  # big endian: high word first (the Modbus norm)
    CDAB = "CDAB"  # low word first, bytes in each word big endian ("word swap")
    BADC = "BADC"  # high word first, bytes in each word swapped ("byte swap")
    DCBA = "DCBA"  # little endian throughout

    @property
    def word_order(self) -> str:
        return "little" if self in (Order.CDAB, Order.DCBA) else "big"

    @property
    def byte_swap(self) -> bool:
        return self in (Order.BADC, Order.DCBA)


# what a live value of each quantity can be; outside, the decoding is wrong
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "v_v": (50.0, 500.0),  # line-to-neutral or line-to-line, LV (or a PT's 57.7/100 V)
    "f_hz": (45.0, 65.0),
    "pf": (-1.0, 1.0),
    "i_a": (0.0, 1e5),
    "p_kw": (-1e5, 1e5),
    "q_kvar": (-1e5, 1e5),
    "soc_pct": (0.0, 100.0),
    "flow_m3h": (-1e5, 1e5),
    "flow_nm3h": (-1e6, 1e6),
    "steam_th": (0.0, 1e3),
    "heat_kw": (-1e6, 1e6),
    "t_supply_c": (-50.0, 300.0),
    "t_return_c": (-50.0, 300.0),
    "t_flue_c": (-50.0, 600.0),
    "t_air_c": (-50.0, 70.0),
    "p_bar": (-1.0, 400.0),
    "level_m": (0.0, 100.0),
    "rh_pct": (0.0, 100.0),
}
_COUNTER_RANGE = (0.0, 1e10)
_TINY = 1e-6  # a non-zero value this small is a misread float, not a measurement


@dataclass(frozen=True)
class Verdict:
    quantity: str
    value: float | None  # None: not decodable (NaN, ∞)
    score: float
    note: str = ""


@dataclass
class Candidate:
    offset: int
    order: Order
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(v.score for v in self.verdicts)

    @property
    def plausible(self) -> int:
        return sum(v.score > 0 for v in self.verdicts)


@dataclass
class ProbeReport:
    profile: str
    unit: int
    candidates: list[Candidate]  # best first
    unreadable: dict[int, str]  # offset → why it could not be read

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def advice(self, profile: MeterProfile) -> str:
        best = self.best
        if best is None:
            return "nothing could be read: check the link, the unit id and the function code"
        if best.plausible == 0:
            return "no combination gives plausible values: is this the right profile?"
        changes: list[str] = []
        if best.offset:
            changes.append(f"add {best.offset:+d} to every address")
        words = {spec.word_order.value for spec in profile.registers if spec.words > 1}
        if best.order.byte_swap:
            changes.append(
                f"bytes are swapped within each word ({best.order}): profiles do not support "
                "that; the meter usually has a setting for it"
            )
        if words and best.order.word_order not in words:
            changes.append(f"use word_order: {best.order.word_order}")
        if not changes:
            return f"the profile {profile.name} reads this meter as it is"
        return f"{best.plausible}/{len(best.verdicts)} values plausible with: " + "; ".join(changes)


def reorder(words: Sequence[int], order: Order) -> list[int]:
    """Words as received → the words in ABCD order, for a value of ``len(words)`` words."""
    out = list(words)
    if order.byte_swap:
        out = [((w & 0xFF) << 8) | (w >> 8) for w in out]
    if order.word_order == "little":
        out.reverse()
    return out


def decode(spec: RegisterSpec, words: Sequence[int], order: Order) -> float:
    """``spec``'s value from its words read in ``order`` (scale applied, no CT/PT ratio)."""
    raw = b"".join(struct.pack(">H", w) for w in reorder(words, order))
    fmt = {
        DataType.INT16: ">h",
        DataType.UINT16: ">H",
        DataType.INT32: ">i",
        DataType.UINT32: ">I",
        DataType.INT64: ">q",
        DataType.UINT64: ">Q",
        DataType.FLOAT32: ">f",
        DataType.FLOAT64: ">d",
    }[spec.type]
    (value,) = struct.unpack(fmt, raw)
    return float(spec.transform.apply(float(value))) * spec.scale


def judge(quantity: str, first: float, second: float, half: bool = False) -> Verdict:
    """How plausible a quantity's value is (read twice: counters must not go down).
    ``half``: a float whose low mantissa word is empty in both reads — a live measurement
    almost never is (1 in 65,536); half of a value read one register off usually is."""
    if not (math.isfinite(first) and math.isfinite(second)):
        return Verdict(quantity, None, -1.0, "not a number")
    counter = QUANTITIES[quantity].is_counter
    low, high = _COUNTER_RANGE if counter else PLAUSIBLE.get(quantity, (-1e9, 1e9))
    value = second
    if not (low <= first <= high and low <= second <= high):
        return Verdict(quantity, value, -1.0, f"outside [{low:g}, {high:g}]")
    if value != 0 and abs(value) < _TINY:
        return Verdict(quantity, value, -1.0, "implausibly small")
    if counter and second < first:
        return Verdict(quantity, value, -1.0, "counter went down")
    if value == 0:
        return Verdict(quantity, value, 0.25, "zero (says little)")
    if half:
        return Verdict(quantity, value, 0.25, "empty low word: half of a value?")
    return Verdict(quantity, value, 1.0)


def _low_word_empty(spec: RegisterSpec, words: Sequence[int], order: Order) -> bool:
    return spec.type is DataType.FLOAT32 and reorder(words, order)[1] == 0


async def _read_shifted(
    link: ModbusLink, unit: int, profile: MeterProfile, offset: int
) -> dict[str, list[int]]:
    """Each mapped quantity's words, every address moved by ``offset``."""
    out: dict[str, list[int]] = {}
    for block in profile.read_plan:
        start = block.address + offset
        if start < 0:
            raise MeterRefusedError("probe", block.function, start, block.count, 2)
        words = await link.read("probe", unit, block.function, start, block.count)
        for spec in block.registers:
            at = spec.address - block.address
            out[spec.quantity] = words[at : at + spec.words]
    return out


async def probe(
    link: ModbusLink,
    unit: int,
    profile: MeterProfile,
    *,
    pause_s: float = 1.0,
    offsets: Sequence[int] = OFFSETS,
) -> ProbeReport:
    """Score every offset × byte/word order for ``profile``'s registers on ``unit``."""
    unreadable: dict[int, str] = {}
    firsts: dict[int, dict[str, list[int]]] = {}
    for offset in offsets:
        try:
            firsts[offset] = await _read_shifted(link, unit, profile, offset)
        except MeterReadError as exc:
            unreadable[offset] = str(exc)
    if firsts:
        await asyncio.sleep(pause_s)  # long enough for a busy meter's counters to move
    candidates: list[Candidate] = []
    for offset, first in firsts.items():
        try:
            second = await _read_shifted(link, unit, profile, offset)
        except MeterReadError as exc:
            unreadable[offset] = str(exc)
            continue
        orders = list(Order) if any(s.words > 1 for s in profile.registers) else [Order.ABCD]
        for order in orders:
            candidate = Candidate(offset, order)
            for spec in profile.registers:
                w1, w2 = first[spec.quantity], second[spec.quantity]
                a, b = decode(spec, w1, order), decode(spec, w2, order)
                half = _low_word_empty(spec, w1, order) and _low_word_empty(spec, w2, order)
                candidate.verdicts.append(judge(spec.quantity, a, b, half))
            candidates.append(candidate)
    # best first; on a tie the configured reading (offset 0, ABCD) wins: no change needed
    candidates.sort(key=lambda c: (-c.score, abs(c.offset), list(Order).index(c.order)))
    return ProbeReport(profile.name, unit, candidates, unreadable)


@dataclass(frozen=True)
class Match:
    """How well a profile reads the meter, at its best offset and order."""

    profile: MeterProfile
    report: ProbeReport

    @property
    def share(self) -> float:
        best = self.report.best
        return best.plausible / len(best.verdicts) if best else 0.0


async def identify(
    link: ModbusLink, unit: int, profiles: Sequence[MeterProfile], pause_s: float = 1.0
) -> list[Match]:
    """No profile given: try each (at its addresses ±1, every order); the profiles that read
    plausible values, best first. Profiles whose registers the meter refuses drop out."""
    matches: list[Match] = []
    for profile in profiles:
        report = await probe(link, unit, profile, pause_s=pause_s)
        if report.best is not None and report.best.plausible:
            matches.append(Match(profile, report))
    matches.sort(key=lambda m: (-m.share, -(m.report.best.score if m.report.best else 0)))
    return matches


@dataclass(frozen=True)
class UnitAnswer:
    unit: int
    answered: bool
    detail: str


async def scan_units(
    link: ModbusLink, units: Sequence[int], profile: MeterProfile | None = None
) -> list[UnitAnswer]:
    """Which unit ids answer on the link: each is asked for one register (the profile's first,
    or holding register 0). An exception answer counts: something is there."""
    function, address = Function.HOLDING, 0
    if profile is not None:
        block = profile.read_plan[0]
        function, address = block.function, block.address
    found: list[UnitAnswer] = []
    for unit in units:
        try:
            await link.read("scan", unit, function, address, 1)
            found.append(UnitAnswer(unit, True, "answered"))
        except MeterRefusedError as exc:
            found.append(UnitAnswer(unit, True, f"answered with exception {exc.code}"))
        except MeterTimeoutError:
            found.append(UnitAnswer(unit, False, "silent"))
        except MeterReadError as exc:
            found.append(UnitAnswer(unit, False, str(exc)))
    return found
