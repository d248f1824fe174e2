"""The level-shift detector's recursion (``analytics.detectors.shift``): each row's recent
slots and short-window medians in rings, the short window's median against the range the
preceding minutes' medians wandered in and their spread, and each meter's event slot after
slot."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.kernels.common import _compiled, _maximum

# 1.4826 · MAD and 1.2533 · mean absolute deviation both estimate a normal σ; the second
# is not 0 when over half of a quantised reference sits on one value
MAD_SIGMA = 1.4826
MEAN_ABS_SIGMA = 1.2533


@_compiled
def _window(
    ring: npt.NDArray[np.float64], r: int, newest: int, first: int, length: int
) -> npt.NDArray[np.float64]:
    """The values (NaN left out) of row ``r``'s slots ``first`` … ``first + length − 1``
    back from the newest slot (``newest``: its count of slots fed, the ring's write head)."""
    size = ring.shape[0]
    out = np.empty(length)
    n = 0
    for j in range(first, first + length):
        x = ring[(newest - 1 - j) % size, r]
        if not np.isnan(x):
            out[n] = x
            n += 1
    return out[:n]


@_compiled
def _count(ring: npt.NDArray[np.float64], r: int, newest: int, first: int, length: int) -> int:
    """How many of the slots ``_window`` would take hold a reading."""
    size = ring.shape[0]
    n = 0
    for j in range(first, first + length):
        if not np.isnan(ring[(newest - 1 - j) % size, r]):
            n += 1
    return n


@_compiled
def _reference(
    ring: npt.NDArray[np.float64],
    r: int,
    newest: int,
    short: int,
    reference: int,
    resolution: float,
    abs_resolution: float,
    fresh: npt.NDArray[np.float64],
) -> None:
    """Row ``r``'s reference median and robust scale into ``fresh[0, r]``, ``fresh[3, r]``."""
    before = _window(ring, r, newest, short, reference)
    m = np.median(before)
    dev = np.abs(before - m)
    fresh[0, r] = m
    # a scale never below the float's resolution: a flat reference's change is judged
    # against its rounding, not against 0
    fresh[3, r] = _maximum(
        _maximum(MAD_SIGMA * float(np.median(dev)), MEAN_ABS_SIGMA * float(np.mean(dev))),
        _maximum(resolution * abs(m), abs_resolution),
    )


@_compiled
def _beyond(x: float, lo: float, hi: float) -> float:
    """How far ``x`` lies outside ``[lo, hi]`` (signed; 0 inside)."""
    if x > hi:
        return x - hi
    if x < lo:
        return x - lo
    return 0.0


@_compiled
def shift_slots(
    values: npt.NDArray[np.float64],
    start_ms: int,
    step_ms: int,
    meter_of: npt.NDArray[np.int64],
    need: npt.NDArray[np.int64],
    fparams: npt.NDArray[np.float64],
    iparams: npt.NDArray[np.int64],
    ring: npt.NDArray[np.float64],
    med_ring: npt.NDArray[np.float64],
    fed: npt.NDArray[np.int64],
    ref: npt.NDArray[np.float64],
    row_shifted: npt.NDArray[np.bool_],
    meter_i: npt.NDArray[np.int64],
    run_start_ms: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``values`` (rows × slots, NaN: no reading) fed slot after slot to the state, in place:
    ``ring`` and ``med_ring`` [window slots, rows] each row's last readings and short-window
    medians (NaN: too few readings), ``fed`` slots fed per row; ``ref`` [4, rows] the
    reference (median, lowest and highest short median, scale) a meter's run or open event
    is judged against, ``row_shifted`` the rows that shifted as it opened; ``meter_i`` per
    meter: [run, open, age, calm, quiet]; ``need`` per meter the rows that must shift
    together. ``fparams``: z_open, z_close, min_share, resolution, abs_resolution;
    ``iparams``: short slots, reference slots, persist slots, settle slots.

    Returns the openings, one row each (slot, meter, row of the largest shift, its short
    median, its reference median, its scales, rows shifted, onset ms), and the closings
    (slot, meter, 1 if the level came back, 0 if the new level was accepted)."""
    z_open, z_close, min_share, resolution, abs_resolution = (
        fparams[0],
        fparams[1],
        fparams[2],
        fparams[3],
        fparams[4],
    )
    short, reference, persist, settle = iparams[0], iparams[1], iparams[2], iparams[3]
    rows, slots = values.shape
    meters = meter_i.shape[0]
    size = ring.shape[0]
    need_short = min_share * short
    need_ref = min_share * reference
    # the short windows inside the reference: lags short … reference
    need_meds = min_share * (reference - short + 1)
    opened = np.empty((8, 8))
    closed = np.empty((8, 3), dtype=np.int64)
    n_opened = 0
    n_closed = 0
    med = np.empty(rows)  # this slot's short median per row (NaN: too few readings)
    fresh = np.empty((4, rows))  # this slot's reference per row (as ``ref``)
    for k in range(slots):
        for r in range(rows):
            head = fed[r] % size
            ring[head, r] = values[r, k]
            fed[r] += 1
            med[r] = np.nan
            fresh[:, r] = np.nan
            recent = _window(ring, r, fed[r], 0, short)
            if recent.size >= need_short:
                med[r] = np.median(recent)
            med_ring[head, r] = med[r]
            if np.isnan(med[r]):
                continue
            if _count(ring, r, fed[r], short, reference) < need_ref:
                continue
            levels = _window(med_ring, r, fed[r], short, reference - short + 1)
            if levels.size < need_meds:
                continue
            # the range the level (the short median) wandered in over the reference: a
            # drift that goes on leaves it slowly, a step at once. The reference's median
            # and scale (fresh[0], fresh[3]) are taken only where a row is outside it or a
            # run begins (_reference): most slots of most rows need neither
            fresh[1, r] = np.min(levels)
            fresh[2, r] = np.max(levels)
        for i in range(meters):
            run, is_open, age, calm, quiet = (
                meter_i[i, 0],
                meter_i[i, 1],
                meter_i[i, 2],
                meter_i[i, 3],
                meter_i[i, 4],
            )
            if not is_open:
                shifted = 0
                for r in range(rows):
                    if meter_of[r] == i and not np.isnan(fresh[1, r]):
                        off = _beyond(med[r], fresh[1, r], fresh[2, r])
                        if off != 0.0:
                            _reference(ring, r, fed[r], short, reference, resolution,
                                       abs_resolution, fresh)  # fmt: skip
                            if abs(off / fresh[3, r]) >= z_open:
                                shifted += 1
                if quiet > 0:
                    # the windows still hold the level before the last event's end
                    quiet -= 1
                    run = 0
                elif shifted >= need[i]:
                    if run == 0:
                        # the reference as the run began: judged against until it ends
                        run_start_ms[i] = start_ms + k * step_ms
                        for r in range(rows):
                            if meter_of[r] == i:
                                if not np.isnan(fresh[1, r]) and np.isnan(fresh[0, r]):
                                    _reference(ring, r, fed[r], short, reference, resolution,
                                               abs_resolution, fresh)  # fmt: skip
                                ref[:, r] = fresh[:, r]
                    run += 1
                else:
                    run = 0
                if run >= persist:
                    is_open = 1
                    age = 0
                    calm = 0
                    top = -1
                    top_z = 0.0
                    n_shift = 0
                    for r in range(rows):
                        if meter_of[r] != i:
                            continue
                        row_shifted[r] = False
                        if np.isnan(ref[0, r]) or np.isnan(med[r]):
                            continue
                        z = _beyond(med[r], ref[1, r], ref[2, r]) / ref[3, r]
                        if abs(z) >= z_open:
                            n_shift += 1
                            row_shifted[r] = True
                        if top < 0 or abs(z) > abs(top_z):
                            top = r
                            top_z = z
                    if n_opened == opened.shape[0]:
                        opened = np.concatenate((opened, np.empty_like(opened)))
                    opened[n_opened, 0] = k
                    opened[n_opened, 1] = i
                    opened[n_opened, 2] = top
                    opened[n_opened, 3] = med[top]
                    opened[n_opened, 4] = ref[0, top]
                    opened[n_opened, 5] = top_z
                    opened[n_opened, 6] = n_shift
                    # the onset: the run began once half the short window had shifted
                    opened[n_opened, 7] = run_start_ms[i] - (short // 2) * step_ms
                    n_opened += 1
            else:
                age += 1
                # back when every row that shifted is within z_close scales of the range
                # it wandered in before (the others may drift on)
                back = True
                for r in range(rows):
                    if meter_of[r] == i and row_shifted[r]:
                        if np.isnan(med[r]):
                            back = False  # too few readings to say it came back
                        elif abs(_beyond(med[r], ref[1, r], ref[2, r])) >= z_close * ref[3, r]:
                            back = False
                calm = calm + 1 if back else 0
                came_back = calm >= persist
                if came_back or age >= settle:
                    if n_closed == closed.shape[0]:
                        closed = np.concatenate((closed, np.empty_like(closed)))
                    closed[n_closed, 0] = k
                    closed[n_closed, 1] = i
                    closed[n_closed, 2] = 1 if came_back else 0
                    n_closed += 1
                    is_open = 0
                    run = 0
                    # no new event until both windows hold only readings after this end
                    quiet = short + reference
            meter_i[i, 0] = run
            meter_i[i, 1] = is_open
            meter_i[i, 2] = age
            meter_i[i, 3] = calm
            meter_i[i, 4] = quiet
    return opened[:n_opened], closed[:n_closed]
