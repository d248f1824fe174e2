"""Meter faults, case by case: what the contract suite's simulated days do not pin down."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.detectors.meter_faults import MeterFaultParams, MeterFaults, word_swapped
from analytics.engine.contract import Block, Finding, FloatArray, ParkContext, SeriesKey
from analytics.engine.slots import slot_block
from parkwatch.site import Park

START_MS = 1_795_968_000_000  # local midnight in Shanghai
STEP_MS = 60_000


def one_meter() -> tuple[ParkContext, list[SeriesKey]]:
    park = Park.model_validate({"park": "p", "meters": [{"id": "m1", "utility": "electricity"}]})
    return ParkContext(park), [SeriesKey("m1", "p_kw")]


def block_of(values: list[float]) -> Block:
    v = np.array(values)
    k = np.flatnonzero(np.isfinite(v))
    return slot_block(
        np.zeros(k.size, dtype=np.int64),
        START_MS + k * STEP_MS,
        v[k],
        1,
        START_MS,
        STEP_MS,
        v.size,
    )


def fed(detector: MeterFaults, block: Block, size: int) -> list[Finding]:
    out: list[Finding] = []
    for first in range(0, block.slots, size):
        out.extend(detector.update(block.window(first, first + size)).findings)
    return out


def test_a_word_swapped_value_after_a_gap_is_found_whatever_the_chunks() -> None:
    ctx, series = one_meter()
    swapped = float(word_swapped(np.array([400.0]))[0])
    values = [400.0 + k % 3 for k in range(30)] + [np.nan, swapped, np.nan] + [401.0] * 10
    block = block_of(values)
    whole = fed(MeterFaults(ctx, series), block, block.slots)
    one_by_one = fed(MeterFaults(ctx, series), block, 1)
    kinds = [(f.kind, f.at_ms, f.active) for f in whole]
    assert ("word_swap", START_MS + 32 * STEP_MS, True) in kinds
    assert [(f.kind, f.at_ms, f.active) for f in one_by_one] == kinds


def test_a_parks_own_quantities_are_watched_for_faults_too() -> None:
    """A sensor that reports only a quantity the park declared (here a vibration sensor) goes
    silent or sticks like any meter: flagged as a meter fault, never left unwatched."""
    park = Park.model_validate(
        {
            "park": "p",
            "quantities": [
                {"name": "vib_mm_s", "unit": "mm/s", "utilities": ["env"], "low": 0, "high": 100}
            ],
            "meters": [{"id": "fan1", "utility": "env"}],
        }
    )
    ctx = ParkContext(park)
    series = [k for k in MeterFaults.select(ctx) if k.quantity == "vib_mm_s"]
    assert series == [SeriesKey("fan1", "vib_mm_s")]
    lively = [2.0 + 0.1 * (k % 5) for k in range(90)]
    block = block_of(lively + [2.3] * 30 + [np.nan] * 20)
    kinds = [(f.kind, f.active) for f in MeterFaults(ctx, series).update(block).findings]
    assert ("stuck_value", True) in kinds
    assert ("comm_loss", True) in kinds


def test_silence_of_an_irregular_series_is_the_same_whatever_the_chunks() -> None:
    """How long a meter may be quiet grows with its usual spacing, which changes as readings
    come: judged slot by slot, so one block or many give the same comm_loss events (two
    outages, longer than its gaps' spread allows, make some)."""
    ctx, series = one_meter()
    rng = np.random.default_rng(3)
    values: list[float] = []
    while len(values) < 2000:
        values += [400.0 + rng.normal(0, 5)] + [np.nan] * int(rng.choice([0, 1, 2, 4, 9, 14]))
        if len(values) in range(700, 720) or len(values) in range(1400, 1420):
            values += [np.nan] * 90
    block = block_of(values[:2000])
    whole = fed(MeterFaults(ctx, series), block, block.slots)
    one_by_one = fed(MeterFaults(ctx, series), block, 1)
    in_sixties = fed(MeterFaults(ctx, series), block, 60)
    kinds = [(f.kind, f.at_ms, f.active, dict(f.evidence)) for f in whole]
    assert sum(kind == "comm_loss" and active for kind, _, active, _ in kinds) == 2
    assert [(f.kind, f.at_ms, f.active, dict(f.evidence)) for f in one_by_one] == kinds
    assert [(f.kind, f.at_ms, f.active, dict(f.evidence)) for f in in_sixties] == kinds


def test_a_long_outage_does_not_hide_the_next_short_silence() -> None:
    """A rig read every second (one gap in twenty a 2 s one) stops for a day, comes back for
    an hour, then stops for half a minute: both silences are comm_loss. The usual spacing was
    the mean over the whole history, outage included: the day made it ~11 s and hid the
    half-minute silence (on SKAB's pump rig a month's pause hid four 1-minute ones)."""
    park = Park.model_validate(
        {"park": "p", "analytics": {"step_s": 1}, "meters": [{"id": "m1", "utility": "env"}]}
    )
    ctx = ParkContext(park)
    rng = np.random.default_rng(7)

    def run(seconds: int) -> list[float]:
        out: list[float] = []
        while len(out) < seconds:
            out += [20.0 + rng.normal(0, 0.1)] + [np.nan] * int(rng.random() < 0.05)
        return out[:seconds]

    values = run(3600) + [np.nan] * 86_400 + run(3600) + [np.nan] * 30 + run(600)
    v = np.array(values)
    k = np.flatnonzero(np.isfinite(v))
    block = slot_block(
        np.zeros(k.size, dtype=np.int64), START_MS + k * 1000, v[k], 1, START_MS, 1000, v.size
    )
    detector = MeterFaults(ctx, [SeriesKey("m1", "t_air_c")])
    found = fed(detector, block, 3600)
    opened = [f.at_ms for f in found if f.kind == "comm_loss" and f.active]
    second = START_MS + (3600 + 86_400 + 3600) * 1000
    assert len(opened) == 2
    assert START_MS + 3600 * 1000 < opened[0] < START_MS + 3610 * 1000
    assert second < opened[1] < second + 10 * 1000


def slowed_meter_comm_loss(
    step_s: int, fast_s: int, slow_s: int, fast_for_s: int, slow_for_s: int
) -> list[bool]:
    """comm_loss findings (active or not, in order) of a meter read every ``fast_s`` for
    ``fast_for_s``, then every ``slow_s`` for ``slow_for_s``, fed an hour at a time."""
    park = Park.model_validate(
        {"park": "p", "analytics": {"step_s": step_s}, "meters": [{"id": "m1", "utility": "env"}]}
    )
    detector = MeterFaults(ParkContext(park), [SeriesKey("m1", "t_air_c")])
    seconds = np.r_[
        np.arange(0, fast_for_s, fast_s), np.arange(fast_for_s, fast_for_s + slow_for_s, slow_s)
    ]
    slots = (fast_for_s + slow_for_s) // step_s
    block = slot_block(
        np.zeros(seconds.size, dtype=np.int64),
        START_MS + seconds * 1000,
        20.0 + 0.1 * np.sin(seconds / 600.0),
        1,
        START_MS,
        step_s * 1000,
        slots,
    )
    found = fed(detector, block, 3600 // step_s)
    return [f.active for f in found if f.kind == "comm_loss"]


def test_a_meter_slowed_from_1_s_to_60_s_for_good_is_learnt_in_a_few_silences() -> None:
    """Read every second for a day, then every minute for good (a firmware's new rate): the
    first silences are real, then the new spacing is learnt (``lasting_gaps`` of them back to
    back), every event closed. Skipping each silence's excess kept the 1 s spacing for
    months: a comm_loss at every reading (247,667 of them)."""
    events = slowed_meter_comm_loss(1, 1, 60, 86_400, 2 * 86_400)
    assert 1 <= events.count(True) <= MeterFaultParams().lasting_gaps
    assert events.count(False) == events.count(True)  # none left open


def test_a_meter_slowed_from_1_min_to_15_min_is_learnt_in_a_few_silences() -> None:
    """Read every minute for 30 days, then every 15 minutes: at most ``lasting_gaps``
    comm_loss events, none left open."""
    events = slowed_meter_comm_loss(60, 60, 900, 30 * 86_400, 10 * 86_400)
    assert 1 <= events.count(True) <= MeterFaultParams().lasting_gaps
    assert events.count(False) == events.count(True)


def report_on_change_comm_loss(
    gaps_s: FloatArray, outage: tuple[int, int] | None = None
) -> list[Finding]:
    """comm_loss findings of a meter that reports on change (its gaps ``gaps_s`` random) for
    60 days at 1-minute slots, fed an hour at a time; ``outage`` (start, end in seconds) a
    stretch with no reading at all."""
    park = Park.model_validate({"park": "p", "meters": [{"id": "m1", "utility": "env"}]})
    detector = MeterFaults(ParkContext(park), [SeriesKey("m1", "t_air_c")])
    seconds = np.cumsum(gaps_s)
    seconds = seconds[seconds < 60 * 86_400]
    if outage is not None:
        seconds = seconds[(seconds < outage[0]) | (seconds >= outage[1])]
    block = slot_block(
        np.zeros(seconds.size, dtype=np.int64),
        START_MS + (seconds * 1000).astype(np.int64),
        20.0 + np.sin(seconds / 3600.0),
        1,
        START_MS,
        STEP_MS,
        60 * 1440,
    )
    return [f for f in fed(detector, block, 60) if f.kind == "comm_loss"]


def test_a_meter_with_exponential_gaps_is_rarely_taken_for_silent() -> None:
    """Gaps of 10 minutes on average, at random (a meter that reports on change): three mean
    gaps, the limit of a regular poller, is passed by one gap in 20 (≈ 370 comm_loss in 60
    days); the gaps' spread sets the limit (one in ~1,100 gaps longer)."""
    gaps = np.random.default_rng(1).exponential(600.0, 9000)
    opened = [f for f in report_on_change_comm_loss(gaps) if f.active]
    assert len(opened) <= 20


def test_a_meter_with_lognormal_gaps_is_rarely_taken_for_silent() -> None:
    """Heavier-tailed gaps (median 5 minutes, log-spread 1): under one gap in 100 is taken
    for silence (≈ 630 comm_loss in 60 days of ~10,000 gaps with three mean gaps)."""
    gaps = np.random.default_rng(1).lognormal(np.log(300.0), 1.0, 11_000)
    opened = [f for f in report_on_change_comm_loss(gaps) if f.active]
    assert len(opened) < 100


def test_a_random_gap_meter_that_stops_is_still_found() -> None:
    """The same exponential meter stops for 12 hours on day 30: one comm_loss opens within
    two hours (mean gap plus six spreads ≈ 70 minutes), and closes when it reports again."""
    gaps = np.random.default_rng(2).exponential(600.0, 9000)
    start, end = 30 * 86_400, 30 * 86_400 + 12 * 3600
    found = report_on_change_comm_loss(gaps, (start, end))
    during = [f for f in found if START_MS + start * 1000 <= f.at_ms <= START_MS + end * 1000]
    assert [f.active for f in during] == [True]
    assert during[0].at_ms - (START_MS + start * 1000) < 2 * 3600 * 1000
    closed = [f for f in found if not f.active and f.at_ms >= START_MS + end * 1000]
    assert closed
    assert closed[0].at_ms < START_MS + end * 1000 + 3600 * 1000


def comm_loss_of_slots(
    slots: npt.NDArray[np.int64], n: int, params: dict[str, int] | None = None
) -> list[Finding]:
    """comm_loss findings of a meter with a reading at each of ``slots`` (1-minute slots) of
    ``n``, fed an hour at a time (``params``: the detector's, where not its defaults)."""
    park = Park.model_validate({"park": "p", "meters": [{"id": "m1", "utility": "env"}]})
    detector = MeterFaults(ParkContext(park), [SeriesKey("m1", "t_air_c")], params)
    block = slot_block(
        np.zeros(slots.size, dtype=np.int64),
        START_MS + slots * STEP_MS,
        20.0 + np.sin(slots / 9.0),
        1,
        START_MS,
        STEP_MS,
        n,
    )
    return [f for f in fed(detector, block, 60) if f.kind == "comm_loss"]


def test_a_poller_whose_link_flapped_finds_short_outages_again() -> None:
    """A 1-minute poller whose link flapped (silences of 10, 60 and 600 minutes, one reading
    between: a restart of its spacing), then polls normally: a 15-minute outage a day later
    is found after 5 minutes, as before the flaps. With the flaps' squares kept in its
    spread it was missed even 30 days on."""
    keep = np.ones(1000 + 673 + 1440 + 15 + 60, dtype=bool)
    keep[1000:1010] = keep[1011:1071] = keep[1072:1672] = False
    outage = 1673 + 1440
    keep[outage : outage + 15] = False
    found = comm_loss_of_slots(np.flatnonzero(keep), keep.size)
    during = [f for f in found if f.active and f.at_ms >= START_MS + outage * STEP_MS]
    assert [(f.at_ms - START_MS) // STEP_MS - outage for f in during] == [5]
    assert during[0].evidence["slots_without_data"] == 5


def test_a_meter_that_turns_from_on_change_to_polled_finds_short_outages() -> None:
    """Reports on change for 10 days (gaps of 10 minutes on average, at random), then is
    polled every minute; a day later a 20-minute outage: found at slot 18 by three usual
    spacings, the random gaps forgotten by the spread term (weighted 1/``spread_window``).
    Kept whole, the on-change gaps' spread set the limit past 20 minutes: missed."""
    rng = np.random.default_rng(3)
    on_change = np.unique(np.cumsum(rng.exponential(10.0, 3000)).astype(np.int64))
    outage = 11 * 1440
    slots = np.r_[
        on_change[on_change < 10 * 1440], np.arange(10 * 1440, outage), outage + 20 + np.arange(60)
    ]

    def during(params: dict[str, int] | None) -> list[tuple[int, bool]]:
        return [
            ((f.at_ms - START_MS) // STEP_MS - outage, f.active)
            for f in comm_loss_of_slots(slots, outage + 80, params)
            if f.at_ms >= START_MS + outage * STEP_MS
        ]

    assert during(None) == [(18, True), (21, False)]
    assert during({"spread_window": 10**9}) == []


def test_a_meter_slowed_to_15_min_is_judged_by_its_new_spacing_alone() -> None:
    """Read every minute for a day, then every 15 minutes; a day later a 2-hour outage: found
    at three new spacings (45 slots), the old 1-minute gaps in no spread of the new rate (the
    spread starts afresh at the restart; carried on, their mix with the 15-minute gaps
    widened the limit)."""
    slots = np.r_[np.arange(0, 1440), np.arange(1440, 4 * 1440, 15)]
    outage = 2 * 1440 + 7
    slots = slots[(slots < outage) | (slots >= outage + 120)]
    found = comm_loss_of_slots(slots, 4 * 1440)
    during = [f for f in found if f.active and outage <= (f.at_ms - START_MS) // STEP_MS]
    last = int(slots[slots < outage][-1])
    # opened with the slot after the 45th without a reading (a 1-minute poller's: the 6th)
    assert [(f.at_ms - START_MS) // STEP_MS - last for f in during] == [46]
    assert during[0].evidence["slots_without_data"] == 45


def test_a_flaky_links_drops_are_not_learnt_as_its_spread() -> None:
    """A 1-minute poller that drops out for 8 minutes every 30 minutes, for 5 days: every
    drop is a comm_loss. Counting each drop's limit squared in the spread widened the limit
    until the drops fitted, and most were missed)."""
    n = 5 * 1440
    keep = np.ones(n, dtype=bool)
    drops = np.arange(60, n - 30, 30)
    for d in drops:
        keep[d : d + 8] = False
    found = comm_loss_of_slots(np.flatnonzero(keep), n)
    assert sum(f.active for f in found) == drops.size
