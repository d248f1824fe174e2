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
    order: npt.NDArray[np.int64],
    first: npt.NDArray[np.int64],
    share: npt.NDArray[np.float64],
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
    reference (median, lowest and highest level, scale) a meter's run, open event or quiet
    period is judged against, ``row_shifted`` the rows that shifted as it opened;
    ``meter_i`` per meter: [run, open, age, calm, quiet]. Meter ``i``'s rows are
    ``order[first[i]:first[i + 1]]``; ``share`` per row the share of slots it is expected to
    fill (the park's step over its own interval, at most 1); ``need`` per meter the rows that
    must shift together. ``fparams``: z_open, z_close, min_share, resolution,
    abs_resolution; ``iparams``: short slots, reference slots, persist slots, settle slots.

    Returns the openings, one row each (slot, meter, row of the largest shift, its short
    median, its reference median, its scales, rows shifted, onset ms, its reference's lowest
    and highest level and scale), and the closings
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
    # the short windows inside the reference: lags short … reference (a median is taken at
    # every slot whose window is covered enough, whatever the meter's interval)
    need_meds = min_share * (reference - short + 1)
    opened = np.empty((8, 11))
    closed = np.empty((8, 3), dtype=np.int64)
    n_opened = 0
    n_closed = 0
    med = np.empty(rows)  # this slot's short median per row (NaN: too few readings)
    fresh = np.empty((4, rows))  # this slot's reference per row (as ``ref``)
    hit = np.zeros(rows, dtype=np.bool_)  # the rows shifted as a run is judged
    for k in range(slots):
        for r in range(rows):
            head = fed[r] % size
            ring[head, r] = values[r, k]
            fed[r] += 1
            med[r] = np.nan
            fresh[:, r] = np.nan
            # coverage is judged against the readings expected: a meter read every 3 s
            # fills a third of a 1-s park's slots
            recent = _window(ring, r, fed[r], 0, short)
            if recent.size >= min_share * short * share[r]:
                med[r] = np.median(recent)
            med_ring[head, r] = med[r]
            if np.isnan(med[r]):
                continue
            if _count(ring, r, fed[r], short, reference) < min_share * reference * share[r]:
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
                # quiet > 0: after a level came back; < 0: after a new level was accepted
                in_quiet = quiet > 0
                suppressed = quiet < 0
                if suppressed:
                    quiet += 1
                else:
                    since_end = short + reference - quiet
                    if in_quiet:
                        quiet -= 1
                    for q in range(first[i], first[i + 1]):
                        r = order[q]
                        if in_quiet and row_shifted[r]:
                            # after a level came back the windows still hold the event's
                            # level: a row that shifted in it is judged against the event's
                            # reference widened by its levels since the end (a second
                            # closing of a valve is seen). The short median taken ``short``
                            # slots ago, after the end (as the reference's levels, none
                            # overlapping the window judged now); the event closed on such
                            # medians back within z_close of the range
                            if since_end >= short:
                                level = med_ring[(fed[r] - 1 - short) % size, r]
                                if not np.isnan(level):
                                    ref[1, r] = min(ref[1, r], level)
                                    ref[2, r] = max(ref[2, r], level)
                            if not np.isnan(med[r]):
                                off = _beyond(med[r], ref[1, r], ref[2, r])
                                if abs(off / ref[3, r]) >= z_open:
                                    shifted += 1
                        elif not np.isnan(fresh[1, r]):
                            # the other rows against their own moving range, as ever: what
                            # drifted through the event (a temperature the closed valve
                            # warmed) has its levels in it
                            off = _beyond(med[r], fresh[1, r], fresh[2, r])
                            if off != 0.0:
                                _reference(ring, r, fed[r], short, reference, resolution,
                                           abs_resolution, fresh)  # fmt: skip
                                if abs(off / fresh[3, r]) >= z_open:
                                    shifted += 1
                if suppressed:
                    run = 0
                elif shifted >= need[i]:
                    if run == 0:
                        # the reference as the run began: judged against until it ends (in
                        # quiet, the event's rows keep the event's)
                        for q in range(first[i], first[i + 1]):
                            r = order[q]
                            if in_quiet and row_shifted[r]:
                                continue
                            if not np.isnan(fresh[1, r]) and np.isnan(fresh[0, r]):
                                _reference(ring, r, fed[r], short, reference, resolution,
                                           abs_resolution, fresh)  # fmt: skip
                            ref[:, r] = fresh[:, r]
                    if run == 0:
                        run_start_ms[i] = start_ms + k * step_ms
                    run += 1
                else:
                    run = 0
                if run >= persist:
                    top = -1
                    top_z = 0.0
                    n_shift = 0
                    for q in range(first[i], first[i + 1]):
                        r = order[q]
                        hit[r] = False
                        if np.isnan(ref[0, r]) or np.isnan(med[r]):
                            continue
                        z = _beyond(med[r], ref[1, r], ref[2, r]) / ref[3, r]
                        if abs(z) >= z_open:
                            n_shift += 1
                            hit[r] = True
                            if top < 0 or abs(z) > abs(top_z):
                                top = r
                                top_z = z
                    if n_shift < need[i] or top < 0:
                        # the run was carried by rows the reference frozen as it began does
                        # not hold: judged against it, too few rows shifted. Start again (in
                        # quiet, the last event's rows are still those it names)
                        run = 0
                    else:
                        for q in range(first[i], first[i + 1]):
                            row_shifted[order[q]] = hit[order[q]]
                        is_open = 1
                        age = 0
                        calm = 0
                        quiet = 0
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
                        opened[n_opened, 8] = ref[1, top]
                        opened[n_opened, 9] = ref[2, top]
                        opened[n_opened, 10] = ref[3, top]
                        n_opened += 1
            else:
                age += 1
                # back when every row that shifted is within z_close scales of the range
                # it wandered in before (the others may drift on), for a short window at
                # least: a shorter return is part of the event (it closed and reopened)
                back = True
                for q in range(first[i], first[i + 1]):
                    r = order[q]
                    if row_shifted[r]:
                        if np.isnan(med[r]):
                            back = False  # too few readings to say it came back
                        elif abs(_beyond(med[r], ref[1, r], ref[2, r])) >= z_close * ref[3, r]:
                            back = False
                calm = calm + 1 if back else 0
                came_back = calm >= max(persist, short)
                if came_back or age >= settle:
                    if n_closed == closed.shape[0]:
                        closed = np.concatenate((closed, np.empty_like(closed)))
                    closed[n_closed, 0] = k
                    closed[n_closed, 1] = i
                    closed[n_closed, 2] = 1 if came_back else 0
                    n_closed += 1
                    is_open = 0
                    run = 0
                    # until both windows hold only readings after this end: the level came
                    # back, the rows that shifted are judged against the event's reference
                    # (widened by their levels since; an event opened then keeps it, so on a
                    # valve closing every few minutes it is never refreshed and only widens),
                    # the others as ever; a new level was accepted, nothing opens (what
                    # drifted on through the event, SKAB's temperatures, still leaves the
                    # windows' range)
                    quiet = short + reference if came_back else -(short + reference)
            meter_i[i, 0] = run
            meter_i[i, 1] = is_open
            meter_i[i, 2] = age
            meter_i[i, 3] = calm
            meter_i[i, 4] = quiet
    return opened[:n_opened], closed[:n_closed]
