"""The baseline deviation detector's recursion along each row's slots: its profiles, its
spread, its events and their re-meeting of a day type's profile."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.kernels.common import _clip, _compiled, _fmax, _fmin, _maximum, _minimum


@_compiled
def _remeet(
    kind: int,
    r: int,
    after_a_while: bool,
    ref_trusted: bool,
    current: bool,
    least: float,
    reach: float,
    lowest: float,
    profile: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.float64],
    recent: npt.NDArray[np.float64],
    ref_then: npt.NDArray[np.float64],
    own_then: npt.NDArray[np.float64],
) -> None:
    """A day type's profile (``kind`` > 0) met on a new day. After a while (not the day
    before), each bin's prediction (profile + offset) follows the change the workdays'
    recent level (``recent``) saw in that bin since this type's last day began
    (``ref_then``): as a ratio for a row that has never read well below 0 (its lowest reading
    ``lowest`` not below −``least``, decided per row, not per bin: a plant stepping to 0 or
    to half keeps no trace of its old shape; one CT offset glitch of −0.001 is no net meter)
    where that level was well above the row's scale (over ``least``: a ratio off a near-0
    workday bin is noise, 100 → 4755; below it nothing is followed: after a shutdown the
    workdays' restart is no weekend's), and no further than the workdays' own change or
    ``reach`` (a few scales); a row seen well below 0 (a net meter) as a difference. On
    either path never below ``lowest``: a difference after a shutdown took a Saturday to
    −107 kW, the scale grew and the restart went unseen. What this type learnt itself on its
    last day (``own_then``: its prediction as that day began) in the same direction counts as
    followed already (a step on a holiday is learnt by the holiday's profile that day, then by
    the workdays': not twice). Then both are taken anew for this day; the workdays' level for
    the whole day, or not at all: only if it explained the day's first reading
    (``current``)."""
    off = offsets[kind, r]
    # the offset is folded into the profile: it starts again at 0 from what is predicted
    # (kept beside a moved profile, both learnt the same miss and overshot)
    fold = after_a_while and ref_trusted
    rate_like = lowest >= -least
    for b in range(profile.shape[1]):
        own = profile[kind, b, r]
        ref = recent[b, r]
        then, start = ref_then[kind, b, r], own_then[kind, b, r]
        now = own + off
        if fold and not np.isnan(own):
            if np.isnan(start):
                # learnt from nothing that day: it followed nothing yet (begun at the workdays'
                # level, a Sunday unlike the workdays learnt their change as its own)
                start = now
            if np.isnan(ref) or np.isnan(then) or (rate_like and not then > least):
                # (a rate's workday bin near 0 then: nothing to scale by, and the workdays'
                # difference is no weekend's: after a shutdown, a weekend's restart is learnt)
                pass
            elif rate_like and ref >= 0 and now >= 0:
                g = ref / then
                g_own = now / start if start > 0 else (1.0 if now == 0 else np.inf)
                if g < 1 and g_own < 1:
                    g = 1.0 if g_own <= g else g / g_own
                elif g > 1 and g_own > 1:
                    g = 1.0 if g_own >= g else g / g_own
                # a profile far above the workdays' bin (a weekend load) is moved no further
                # than the workdays' own change, or a few scales
                most = _maximum(abs(ref - then), reach)
                now = now + _clip(now * (g - 1.0), -most, most)
            else:
                d = ref - then
                d_own = now - start
                if d < 0 and d_own < 0:
                    d = 0.0 if d_own <= d else d - d_own
                elif d > 0 and d_own > 0:
                    d = 0.0 if d_own >= d else d - d_own
                now = now + d
            if now < lowest:
                now = lowest  # what the meter never read is not expected
            profile[kind, b, r] = now
        ref_then[kind, b, r] = ref if current else np.nan
        own_then[kind, b, r] = now
    if fold:
        offsets[kind, r] = 0.0


@_compiled
def baseline_slots(
    values: npt.NDArray[np.float64],
    ids: npt.NDArray[np.int64],
    day: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.int64],
    bins: npt.NDArray[np.int64],
    rates: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    fs: npt.NDArray[np.float64],
    ints: npt.NDArray[np.int64],
    days_seen: npt.NDArray[np.int64],
    last_day: npt.NDArray[np.int64],
    profile: npt.NDArray[np.float64],
    profile_n: npt.NDArray[np.int32],
    offsets: npt.NDArray[np.float64],
    recent: npt.NDArray[np.float64],
    ref_then: npt.NDArray[np.float64],
    own_then: npt.NDArray[np.float64],
    row_open: npt.NDArray[np.bool_],
    meter_open: npt.NDArray[np.bool_],
    meter_of: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The baseline detector's recursion (``BaselineDetector``), slot after slot of a block
    (``values``: block rows × slots; ``ids``: the detector row of each block row), on its
    state in place: ``fs`` the float state rows (``baseline._FLOAT_ROWS``), ``ints`` the
    integer ones (``baseline._INT_ROWS``); ``rates`` and ``counts`` as ``baseline._kernel_args``
    orders them; ``ref_then`` and ``own_then`` what ``_remeet`` keeps of each day type's last
    day. Returns the meters whose event opened, one row each (slot, row that opened
    it — the first —, deviation, expected, scales, reason), and those whose event closed
    (slot, meter)."""
    level_rate, offset_rate, scale_rate, a_f, decay, slow_rate = (
        rates[0],
        rates[1],
        rates[2],
        rates[3],
        rates[4],
        rates[5],
    )
    season_rate, record_margin, z_min, z_close = rates[6], rates[7], rates[8], rates[9]
    margin, peak_margin, record_growth, clip, range_floor, resolution, quantum_scales = (
        rates[10],
        rates[11],
        rates[12],
        rates[13],
        rates[14],
        rates[15],
        rates[16],
    )
    abs_resolution, quantum_share, recent_rate, extreme_scales = (
        rates[17],
        rates[18],
        rates[19],
        rates[20],
    )
    warm_slots, hold_slots, quiet_slots, near = counts[0], counts[1], counts[2], counts[3]
    season_bins, season_days, warmup_min_slots, record_skip, quantum_repeats = (
        counts[4],
        counts[5],
        counts[6],
        counts[7],
        counts[8],
    )
    peak = 1.0 + peak_margin
    rows, slots = values.shape
    fired = np.empty((16, 6))
    closed = np.empty((16, 2), dtype=np.int64)
    n_fired = 0
    n_closed = 0
    # the rows that opened an event in the slot: (row, scales, reason)
    opened = np.empty((rows, 3))
    for k in range(slots):
        kind, b, today = kinds[k], bins[k], day[k]
        b_prev = (b - near) % season_bins
        b_next = (b + near) % season_bins
        any_change = False
        n_opened = 0
        for i in range(rows):
            r = ids[i]
            fs[0, r] *= decay  # record
            fs[1, r] *= decay  # record_cold
            ints[1, r] = max(ints[1, r] - 1, 0)  # quiet
            x = values[i, k]
            if np.isnan(x):
                continue
            seen = ints[0, r] + 1
            ints[0, r] = seen
            first = seen == 1
            if last_day[kind, r] != today:
                # a profile met again after a while (a Saturday, a holiday weeks on) follows
                # the lasting change the workdays saw meanwhile, and keeps its own shape and
                # level otherwise: a step for good is not remarked there, a plant run like a
                # workday through a holiday is flagged (learnt afresh, none was found)
                if kind > 0:
                    # the workdays' recent level is a base to follow a change from only where
                    # it explains this first reading (within z_min scales): else they have not
                    # seen a change this day type sees already (a plant started on a Saturday,
                    # its workdays still at standby)
                    tol = z_min * _maximum(fs[5, r], fs[8, r])
                    # the row's scale, floored by its resolution: a ratio is taken off a
                    # workday level well above it only, and moves a few of it at most
                    eps = _maximum(resolution * abs(fs[2, r]), abs_resolution)
                    res = _maximum(
                        _maximum(fs[5, r], fs[8, r]), _maximum(eps, fs[18, r] / quantum_scales)
                    )
                    _remeet(kind, r, today - last_day[kind, r] > 1, days_seen[0, r] > season_days,
                            abs(x - recent[b, r]) <= tol, z_min * res, clip * res, fs[3, r],
                            profile, offsets, recent, ref_then, own_then)  # fmt: skip
                days_seen[kind, r] += 1
            last_day[kind, r] = today
            level = x if first else fs[2, r]
            lo, hi = fs[3, r], fs[4, r]
            span = hi - lo
            if not np.isfinite(span):
                span = 0.0
            near_prev = profile[kind, b_prev, r]
            own_v = profile[kind, b, r]
            near_next = profile[kind, b_next, r]
            own_n = profile_n[kind, b, r]
            own = days_seen[kind, r] > season_days and own_n > 0
            # the offset is the day type's own: a shared one carried the workday profile's lag
            # after a step onto a Saturday profile already at the new level
            offset = offsets[kind, r]
            if own:
                band_lo = _fmin(_fmin(near_prev, own_v), near_next) + offset
                band_hi = _fmax(_fmax(near_prev, own_v), near_next) + offset
            else:
                # what the trusted profiles of the other day types and the level explain
                band_lo = level
                band_hi = level
                for t in range(days_seen.shape[0]):
                    if days_seen[t, r] > season_days and not np.isnan(profile[t, b, r]):
                        p0, p1, p2 = profile[t, b_prev, r], profile[t, b, r], profile[t, b_next, r]
                        band_lo = _minimum(band_lo, _fmin(_fmin(p0, p1), p2))
                        band_hi = _maximum(band_hi, _fmax(_fmax(p0, p1), p2))
            if x > band_hi:
                dev = x - band_hi
            elif x < band_lo:
                dev = x - band_lo
            else:
                dev = 0.0
            scale = fs[5, r]
            level_scale = fs[6, r]
            scale_slow = fs[8, r]
            # the slower scale is a floor: after a calm day the usual swings are no deviation
            unit = _maximum(scale if own else _maximum(scale, level_scale), scale_slow)
            # the range floor counts this reading: the first change of a series that has read
            # one value is then 1 / range_floor scales, not |dev| / 1e-12; and no scale is
            # below the float's resolution (a share of the level of the order of its rounding,
            # and an absolute epsilon where the level is 0: a virtual meter's a − b residue)
            # nor below a step of the series' own quantum / quantum_scales. The share is no
            # meter's accuracy: 0.25 % hid 30-scale dips of a steady 50 Hz or 10 MW series
            quantum = fs[18, r]
            eps = _maximum(resolution * abs(level), abs_resolution)
            res = _maximum(eps, quantum / quantum_scales)
            floor = _maximum(range_floor * (_maximum(hi, x) - _minimum(lo, x)), res)
            z = 0.0 if first else abs(dev) / (unit + 1e-12 + floor)
            own_seen_prev = ints[2, r]
            f_level = x if first else fs[7, r]
            f_level_new = f_level + a_f * (x - f_level)
            lvl_lo, lvl_hi = fs[9, r], fs[10, r]
            lvl_span = lvl_hi - lvl_lo
            jump = abs(x - fs[11, r])
            if np.isnan(jump):
                jump = 0.0
            jump_hi = fs[12, r]
            # one step of the series' own (repeated) quantum off its band, reached by one
            # step, is a quantised sensor's flicker: nothing, neither a deviation nor a record
            # (under 1.5 steps: the band, learnt from quantised readings, lies off their grid)
            within = quantum > 0 and _maximum(abs(dev), jump) < 1.5 * quantum
            if within:
                z = 0.0
            f_dev = fs[13, r]
            f_dev_new = f_dev + a_f * (abs(dev) - f_dev) if own else f_dev
            dev_hi = fs[14, r]
            # one reason per new extreme, in the order the evidence names them
            reason = -1
            # beyond the old extreme by a share of the range and by extreme_scales scales:
            # a noisy series' range grows with its noise, by less than its scale
            past = extreme_scales * (unit + floor)
            if (x > hi + _maximum(margin * span, past)) or (x < lo - _maximum(margin * span, past)):
                reason = 0
            elif lvl_span > 0 and (
                (f_level_new > lvl_hi + _maximum(margin * lvl_span, past))
                or (f_level_new < lvl_lo - _maximum(margin * lvl_span, past))
            ):
                reason = 1
            elif jump_hi > 0 and jump > jump_hi * peak:
                reason = 2
            elif own and own_seen_prev > warm_slots and dev_hi > 0 and f_dev_new > dev_hi * peak:
                reason = 3
            if reason >= 0 and (within or _maximum(abs(dev), jump) <= z_min * res):
                reason = -1  # within the resolution or a quantum: no extreme
            extreme = reason >= 0
            warm = seen > warm_slots
            record_own, record_cold = fs[0, r], fs[1, r]
            own_seen = own_seen_prev + (1 if own else 0)
            ints[2, r] = own_seen
            if own:
                record = record_own if own_seen > warm_slots else _maximum(record_own, record_cold)
            else:
                record = record_cold
            quiet = ints[1, r]
            z_ok = own and z > _maximum(record * record_margin, z_min) and quiet == 0
            fire = warm and (z_ok or extreme)
            was_open = row_open[r]
            opening = fire and not was_open
            hold = hold_slots if opening else max(ints[3, r] - 1, 0)
            closing = was_open and not fire and hold <= 0 and z < z_close
            is_open = (was_open or opening) and not closing
            if opening and not extreme:
                ints[1, r] = quiet_slots
            row_open[r] = is_open
            ints[3, r] = hold
            rec_open = _maximum(record, z_min) if opening else fs[15, r]
            fs[15, r] = rec_open
            settled = seen > record_skip
            # a deviation silenced by the day of quiet is one the operator heard of today, as
            # one that opened: it takes the record no further than an open one could (else a
            # repeat two days on must beat the silenced one by record_margin, and does not)
            silenced = own and warm and quiet > 0 and z > _maximum(record * record_margin, z_min)
            z_rec = _minimum(z, record_growth * rec_open) if is_open or silenced else z
            if settled and own:
                fs[0, r] = _maximum(record_own, z_rec)
            if settled and not own:
                fs[1, r] = _maximum(record_cold, z_rec)
            fs[16, r] = dev
            fs[17, r] = band_hi if dev > 0 else band_lo
            # learn: scale, level, offset, profile, ranges
            grown = seen > warmup_min_slots
            rate_scale = _maximum(1.0 / seen, scale_rate)
            if not first and unit <= floor:
                # a flat series (its scale under the floor: it has read one value, or nearly)
                # that changes: its scale is what the change says (as if it had been a clip's
                # worth of misses), not 0 regrown from the floor over days while its event
                # stays open and hides what comes next
                seed = abs(x - level) / clip
                scale = _maximum(scale, seed)
                level_scale = _maximum(level_scale, seed)
            # misses are clipped at clip scales, but never at 0 scales: a series that has read
            # one value (a meter at 0 until its plant starts) has learnt a scale of 0, and
            # clipped at 0 it would learn nothing from any miss ever after (nor its profile
            # move); the range floor, this reading in the range, is not 0 once it has changed
            bound = clip * _maximum(scale, floor)
            resid = x - (own_v + offset) if own else x - level
            if grown:
                resid = _clip(resid, -bound, bound)
            fs[5, r] = scale + rate_scale * (abs(resid) - scale)
            fs[8, r] = scale_slow + _maximum(1.0 / seen, slow_rate) * (abs(resid) - scale_slow)
            miss = x - level
            if grown:
                level_bound = clip * _maximum(level_scale, floor)
                miss = _clip(miss, -level_bound, level_bound)
            fs[6, r] = level_scale + rate_scale * (abs(miss) - level_scale)
            fs[2, r] = level + level_rate * (x - level)
            if own and not is_open:
                offsets[kind, r] = offset + offset_rate * ((x - own_v) - offset)
            known = own_n > 0
            step = x - own_v if known else x
            bound += abs(offset)
            if known and grown:
                step = _clip(step, -bound, bound)
            rate = _maximum(1.0 / (own_n + 1), season_rate) if known else 1.0
            profile[kind, b, r] = own_v + rate * step if known else x
            if kind == 0:
                # the workdays' recent level per bin (a couple of days): what a day type met
                # again after a while follows (the profile itself lags a change for weeks)
                # (unclipped: clipped at the scale before a step it lagged a shutdown or a
                # restart for weeks, and a profile met again followed that lag)
                last = recent[b, r]
                recent[b, r] = x if np.isnan(last) else last + recent_rate * (x - last)
            profile_n[kind, b, r] = own_n + 1
            fs[3, r] = _minimum(lo, x)
            fs[4, r] = _maximum(hi, x)
            fs[7, r] = f_level_new
            if settled:
                fs[9, r] = _minimum(lvl_lo, f_level_new)
                fs[10, r] = _maximum(lvl_hi, f_level_new)
                fs[12, r] = _maximum(jump_hi, jump)
            fs[11, r] = x
            if jump > eps:
                # the quantum is a step size seen quantum_repeats times (the smallest such),
                # and at most quantum_share of the largest value seen: a first change off a
                # constant (0 → 500), a load's stage (25/50 kW, pumps 1/2) or a load switching
                # on and off is no sensor's step, and one stage's change for good is alerted
                cand, cand_n = fs[19, r], ints[4, r]
                if cand > 0 and abs(jump - cand) <= 1e-6 * cand:
                    cand_n += 1
                elif cand == 0 or jump < cand:
                    cand, cand_n = jump, 1
                fs[19, r] = cand
                ints[4, r] = cand_n
                top = _maximum(abs(fs[3, r]), abs(fs[4, r]))
                if cand_n >= quantum_repeats and cand <= quantum_share * top:
                    fs[18, r] = cand if quantum == 0 else _minimum(quantum, cand)
            fs[13, r] = f_dev_new
            if settled and own:
                fs[14, r] = _maximum(dev_hi, f_dev_new)
            if opening or closing:
                any_change = True
            if opening:
                opened[n_opened, 0] = r
                opened[n_opened, 1] = z
                opened[n_opened, 2] = reason
                n_opened += 1
        if not any_change:
            continue
        # meters: one event per meter, open while any of its rows is
        now = np.zeros(meter_open.size, dtype=np.bool_)
        for r in range(row_open.size):
            if row_open[r]:
                now[meter_of[r]] = True
        for m in range(meter_open.size):
            if now[m] and not meter_open[m]:
                for j in range(n_opened):
                    r = int(opened[j, 0])
                    if meter_of[r] == m:
                        if n_fired == fired.shape[0]:
                            fired = np.concatenate((fired, np.empty_like(fired)))
                        fired[n_fired, 0] = k
                        fired[n_fired, 1] = r
                        fired[n_fired, 2] = fs[16, r]
                        fired[n_fired, 3] = fs[17, r]
                        fired[n_fired, 4] = opened[j, 1]
                        fired[n_fired, 5] = opened[j, 2]
                        n_fired += 1
                        break
        for m in range(meter_open.size):
            if meter_open[m] and not now[m]:
                if n_closed == closed.shape[0]:
                    closed = np.concatenate((closed, np.empty_like(closed)))
                closed[n_closed, 0] = k
                closed[n_closed, 1] = m
                n_closed += 1
            meter_open[m] = now[m]
    return fired[:n_fired], closed[:n_closed]
