"""Flags at the source: what a meter's new reading says compared with its previous one.

The gateway is the only place that sees every sample of a meter in order, with the register it
came from, so it flags what it sees and changes nothing: the values go out as the meter gave
them, and the reading's quality says what happened since the meter's previous reading.

* ``rollover`` — a counter went down by what its register's wrap explains: an unsigned 16- or
  32-bit register (``2**bits × scale × ratio``), a DL/T 645 BCD counter (``999999.99`` →
  ``0``). Read as a wrap when the increment across the wrap is within a tenth of the range.
* ``reset`` — a counter went back to near zero (below 5 % of where it was), not by a wrap: the
  meter was cleared.
* ``replaced`` — a counter went back to somewhere else (another meter's reading), or the
  meter's own identity changed (a DL/T 645 meter found by broadcast answers with another
  address).
* ``stale`` — every value is exactly what it was, and some instantaneous value is not zero: a
  live measurement (power, flow, voltage) does not repeat to the last bit; a frozen meter or a
  controller that stopped updating does. All zeros (no flow at night) is a real reading.

A counter that goes *up* by more than its meter could have counted is not judged: that needs
the meter's maximum rate, and a gap after an outage looks the same. A missed poll is simply a
gap: no reading, nothing filled in; the next reading is compared with the last one received.
"""

from __future__ import annotations

from collections.abc import Mapping

from parkwatch.quantities import QUANTITIES

ROLLOVER_WINDOW = 0.1  # a wrap's increment is at most this share of the register's range
RESET_BELOW = 0.05  # a reset counter restarts below this share of its last value

# the stronger flag wins when several apply
_RANK = {"ok": 0, "estimated": 1, "stale": 2, "rollover": 3, "reset": 4, "replaced": 5}


def worst(*qualities: str) -> str:
    return max(qualities, key=lambda q: _RANK.get(q, 0))


class SourceFlags:
    """One meter's previous reading, and the flag its next reading earns."""

    def __init__(self, moduli: Mapping[str, float] | None = None) -> None:
        self.moduli = dict(moduli or {})
        self._last: dict[str, float] | None = None
        self._identity: str | None = None

    def judge(self, values: Mapping[str, float], identity: str | None = None) -> str:
        """The quality of ``values``; they become the previous reading."""
        last, last_identity = self._last, self._identity
        self._last = dict(values)
        if identity is not None:
            self._identity = identity
        if last is None:
            return "ok"
        flag = "ok"
        counters = [q for q in values if q in last and QUANTITIES[q].is_counter]
        if counters and identity is not None and last_identity not in (None, identity):
            flag = "replaced"
        for quantity in counters:
            flag = worst(flag, self._counter(quantity, last[quantity], values[quantity]))
        if flag == "ok" and values == last:
            live = any(v != 0 for q, v in values.items() if not QUANTITIES[q].is_counter)
            if live:
                flag = "stale"
        return flag

    def _counter(self, quantity: str, old: float, new: float) -> str:
        if new >= old:
            return "ok"
        modulus = self.moduli.get(quantity)
        if modulus and 0 <= new + modulus - old <= modulus * ROLLOVER_WINDOW:
            return "rollover"
        if new < old * RESET_BELOW:
            return "reset"
        return "replaced"
