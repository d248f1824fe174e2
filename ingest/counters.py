"""Cumulative counters that go backwards: stored, never dropped, and never silent.

A counter (``e_kwh``, ``vol_m3``, …) lower than the same meter's previous reading is a reset,
a replacement or a fault. Ingest cannot tell which, and must not drop it (it may be real), so
it stores it as given with the quality ``decreased`` — unless the gateway already flagged the
reading (``rollover``, ``reset``, ``replaced``, or ``stale``/``estimated``/``bad``), whose
quality is kept — and counts it by quantity. Analytics and the energy accounting see the flag
next to the values; operators see the metric.

Only readings newer than the last one seen for a meter are compared: a backlog arriving
after live readings is older and says nothing about the counter's direction now. Readings
the gateway marked ``bad`` are neither compared nor a reference: their values are wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from parkwatch import hotpath
from parkwatch.quantities import QUANTITIES
from parkwatch.site import Meter
from parkwatch.wire import AcceptedReading, Quality

COUNTERS = frozenset(name for name, q in QUANTITIES.items() if q.is_counter)
_BAD, _OK, _DECREASED = Quality.BAD.value, Quality.OK.value, Quality.DECREASED.value
# the entry of a quantity that is no counter: never compared, never updated
_NOT_COUNTED: list[float] = []
# the loop compiled, or None where the extension is not built (parkwatch.hotpath)
_flag_compiled = hotpath.flag_counters
scan_message = hotpath.scan_message
SCANNING = scan_message is not None  # CounterWatch.scan can take a message
# scan_message's last argument: the quality names
QUALITY_NAMES = tuple(q.value for q in Quality)
# a reading's quality → what its line carries (nothing for ok)
QUALITY_FIELD = {s.value: f',quality="{s.value}"' for s in Quality if s is not Quality.OK}


# what CounterWatch.scan gives for a message: seq, its lines, values, newest time, decreases
Scanned = tuple[int, list[str], int, int, list["Decrease"]]


@dataclass(frozen=True, slots=True)
class Decrease:
    meter: str
    quantity: str
    before: float
    after: float


class CounterWatch:
    def __init__(self) -> None:
        # series key → quantity → [time, value] of the newest reading seen, or _NOT_COUNTED
        # for a quantity that is no counter (so that the hot loop needs one dict look-up per value,
        # counter or not); bounded by the configured meters and the registry's quantities,
        # since only readings of known meters get here. Two levels of plain string keys and
        # entries updated in place: no key tuple and no new entry per value on the hot path
        # (the tuple-keyed version took a fifth of ingest's CPU at 1,000 readings per message)
        self._last: dict[str, dict[str, list[float]]] = {}

    def flag(self, readings: list[AcceptedReading]) -> list[Decrease]:
        """Flag (in place) the readings whose counters went backwards; what went back."""
        if _flag_compiled is not None:
            found: list[Decrease] = _flag_compiled(
                self._last, readings, COUNTERS, _NOT_COUNTED, _BAD, _OK, _DECREASED, Decrease
            )
            return found
        return self.flag_py(readings)

    def scan(
        self,
        payload: bytes,
        gateway: str,
        meters: Mapping[str, Meter],
        newest_ok: int,
        max_readings: int,
    ) -> Scanned | None:
        """A plainly valid message straight to its lines, through this watch (compiled:
        :func:`parkwatch._hotpath.scan_message`, then its ``commit``): what ``plain_message``,
        :meth:`flag` and ``ingest.service.encode_lines`` give for it. None (the state
        untouched) where it gives up or the extension is not built: those three then say it.
        Ingest makes the two calls itself, tracking the seq between them."""
        if scan_message is None:
            return None
        scanned = scan_message(payload, gateway, meters, newest_ok, max_readings, QUALITY_NAMES)
        if scanned is None:
            return None
        lines, values, newest, decreases = scanned.commit(*self.commit_args())
        return scanned.seq, lines, values, newest, decreases

    def commit_args(self) -> tuple[object, ...]:
        """The arguments of a scanned message's ``commit``: this watch's state and rules."""
        return (QUALITY_FIELD, self._last, COUNTERS, _NOT_COUNTED, Decrease)

    def flag_py(self, readings: list[AcceptedReading]) -> list[Decrease]:
        """:meth:`flag` in Python: the reference for the compiled loop, and what runs where
        that is not built."""
        found: list[Decrease] = []
        last = self._last
        for i, reading in enumerate(readings):
            meter, t, values, quality = reading
            if quality == _BAD:
                # the gateway says its values are wrong (a garbled register): no reference
                # for the next reading, or a good one after 1e12 would count as going back
                continue
            newest = last.get(meter.series)
            if newest is None:
                newest = last[meter.series] = {}
            for name, value in values.items():
                entry = newest.get(name)
                if entry is None:
                    newest[name] = [t, value] if name in COUNTERS else _NOT_COUNTED
                    continue
                if entry is _NOT_COUNTED or t <= entry[0]:
                    continue
                before = entry[1]
                entry[0] = t
                entry[1] = value
                if value < before:
                    found.append(Decrease(meter.id, name, before, value))
                    if quality == _OK:
                        readings[i] = reading._replace(s=_DECREASED)
        return found
