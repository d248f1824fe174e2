"""NAB scoring against cases computed by hand, and against NAB's own published numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from analytics.scoring.nab import (
    PROFILES,
    FileScore,
    Window,
    load_profiles,
    normalise,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    score_file,
    windows_from_times,
)

STANDARD = PROFILES["standard"]
LOW_FP = PROFILES["reward_low_FP_rate"]
LOW_FN = PROFILES["reward_low_FN_rate"]
NAB = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"

# 100 rows: the probationary period is floor(0.15 · 100) = 15 rows; one window, rows 40..49
ROWS = 100
WINDOW = [Window(40, 49)]
# σ₅(y) = 2/(1 + e^{5y}) − 1; the earliest point of a window, y = −1, is NAB's maxTP
MAX_TP = 2 / (1 + math.exp(-5)) - 1  # 0.9866142981514305


def test_scaled_sigmoid_values() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.9866142981514305)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.8482836399575131)  # 2/(1 + e^{−2.5}) − 1
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.9866142981514305)
    assert scaled_sigmoid(2.999) == pytest.approx(2 / (1 + math.exp(14.995)) - 1)
    assert scaled_sigmoid(3.0) == -1.0  # flat from three window-widths on


def test_probation_length() -> None:
    assert probation_length(100) == 15
    assert probation_length(4032) == 604  # floor(604.8)
    assert probation_length(15_902) == 750  # capped at 0.15 · 5000


def test_alarm_at_first_row_of_window_earns_one() -> None:
    # y = −(49 − 40 + 1)/10 = −1 → σ₅(−1)/maxTP = 1
    result = score_file([40], ROWS, WINDOW, STANDARD)
    assert result.score == pytest.approx(1.0)
    assert (result.windows, result.detected, result.false_alarms) == (1, 1, 0)


def test_alarm_at_window_centre() -> None:
    # y = −(49 − 45 + 1)/10 = −0.5 → 0.848284/0.986614 = 0.859793
    result = score_file([45], ROWS, WINDOW, STANDARD)
    assert result.score == pytest.approx(0.8482836399575131 / MAX_TP)
    assert result.score == pytest.approx(0.859793, abs=1e-6)


def test_alarm_at_last_row_of_window() -> None:
    # y = −(49 − 49 + 1)/10 = −0.1 → (2/(1 + e^{−0.5}) − 1)/maxTP = 0.244919/0.986614
    expected = (2 / (1 + math.exp(-0.5)) - 1) / MAX_TP
    assert score_file([49], ROWS, WINDOW, STANDARD).score == pytest.approx(expected)
    assert expected == pytest.approx(0.248242, abs=1e-6)


def test_only_the_earliest_alarm_of_a_window_counts() -> None:
    # rows 45, 46, 47 all in the window: only row 45's 0.859793 counts
    assert score_file([45, 46, 47], ROWS, WINDOW, STANDARD).score == pytest.approx(
        0.8482836399575131 / MAX_TP
    )


def test_false_alarm_before_the_first_window_costs_full_weight() -> None:
    # row 20: after probation, before any window → −fpWeight; the window is missed → −fnWeight
    # standard: −0.11 − 1 = −1.11; low FP: −0.22 − 1 = −1.22; low FN: −0.11 − 2 = −2.11
    assert score_file([20], ROWS, WINDOW, STANDARD).score == pytest.approx(-1.11)
    assert score_file([20], ROWS, WINDOW, LOW_FP).score == pytest.approx(-1.22)
    assert score_file([20], ROWS, WINDOW, LOW_FN).score == pytest.approx(-2.11)


def test_alarms_in_probation_are_not_scored() -> None:
    # row 10 < 15: ignored; the window is missed: −1
    result = score_file([10], ROWS, WINDOW, STANDARD)
    assert result.score == pytest.approx(-1.0)
    assert result.false_alarms == 0


def test_false_alarm_right_after_a_window_costs_little() -> None:
    # hit at 45 (0.859793) + alarm at 52: y = |49 − 52|/(10 − 1) = 1/3
    # σ₅(1/3) = 2/(1 + e^{5/3}) − 1 = 2/6.294490 − 1 = −0.682265; × 0.11 = −0.075049
    fp = (2 / (1 + math.exp(5 / 3)) - 1) * 0.11
    assert fp == pytest.approx(-0.075049, abs=1e-6)
    result = score_file([45, 52], ROWS, WINDOW, STANDARD)
    assert result.score == pytest.approx(0.8482836399575131 / MAX_TP + fp)
    assert result.false_alarms == 1


def test_false_alarm_far_after_a_window_costs_full_weight() -> None:
    # row 90: y = 41/9 = 4.56 ≥ 3 → σ₅ = −1 → −0.11; with the hit at 40: 1 − 0.11 = 0.89
    assert score_file([40, 90], ROWS, WINDOW, STANDARD).score == pytest.approx(0.89)


def test_false_alarm_between_two_windows_is_measured_from_the_previous_one() -> None:
    # windows 30..39 and 70..79; alarms at 30 (+1), 70 (+1) and 45: y = |39 − 45|/9 = 2/3
    # σ₅(2/3) = 2/(1 + e^{10/3}) − 1 = −0.931109 → × 0.11 = −0.102422
    windows = [Window(30, 39), Window(70, 79)]
    fp = (2 / (1 + math.exp(10 / 3)) - 1) * 0.11
    result = score_file([30, 45, 70], ROWS, windows, STANDARD)
    assert result.score == pytest.approx(2.0 + fp)
    assert fp == pytest.approx(-0.102422, abs=1e-6)


def test_never_alarm_and_perfect_normalise_to_0_and_100() -> None:
    windows = [Window(30, 39), Window(70, 79)]
    for cost in PROFILES.values():
        never = score_file([], ROWS, windows, cost)
        perfect = score_file([30, 70], ROWS, windows, cost)
        assert never.score == -2 * cost.fn_weight
        assert perfect.score == pytest.approx(2 * cost.tp_weight)
        assert normalise(never.score, 2, cost) == 0.0
        assert normalise(perfect.score, 2, cost) == pytest.approx(100.0)


def test_normalisation_arithmetic() -> None:
    # standard, 2 windows: null −2, perfect +2; raw 0 → 100 · (0 + 2)/(2 + 2) = 50
    assert normalise(0.0, 2, STANDARD) == pytest.approx(50.0)
    # low FN, 1 window: null −2, perfect +1; raw −2.11 → 100 · (−2.11 + 2)/(1 + 2) = −3.667
    assert normalise(-2.11, 1, LOW_FN) == pytest.approx(-11 / 3)


def test_corpus_sums_files_and_normalises_over_all_windows() -> None:
    files = {
        "a.csv": score_file([40], ROWS, WINDOW, STANDARD),  # +1
        "b.csv": score_file([20], ROWS, WINDOW, STANDARD),  # −1.11
        "c.csv": score_file([20], ROWS, [], STANDARD),  # no window: −0.11
    }
    corpus = score_corpus(files, STANDARD)
    assert corpus.raw == pytest.approx(1 - 1.11 - 0.11)
    assert corpus.windows == 2
    assert corpus.detected == 1
    assert corpus.false_alarms == 2
    # 100 · (−0.22 + 2)/(2 + 2) = 44.5
    assert corpus.normalised == pytest.approx(44.5)


def test_windows_must_fall_on_rows() -> None:
    times = np.arange(0, 100_000, 1000, dtype=np.int64)
    assert windows_from_times(times, [(40_000, 49_000)]) == [Window(40, 49)]
    with pytest.raises(ValueError, match="rows of the file"):
        windows_from_times(times, [(40_500, 49_000)])


def test_alarm_outside_the_file_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        score_file([100], ROWS, WINDOW, STANDARD)


def test_profiles_file_matches() -> None:
    assert load_profiles(NAB / "config" / "profiles.json") == PROFILES


# Published per-file scores of ARTime (numenta/NAB results/ARTime/ARTime_standard_scores.csv),
# summed per family of the files here; the datasets README says ARTime normalises to about 77.
ARTIME_STANDARD = {  # family: (sum of file scores, windows)
    "artificialNoAnomaly": (-0.11, 0),
    "artificialWithAnomaly": (2.44175, 6),
    "realAWSCloudwatch": (11.68573, 30),
    "realAdExchange": (7.03442, 14),
    "realTraffic": (10.31953, 14),
    "realTweets": (21.01548, 33),
}


def test_published_results_normalise_to_the_datasets_figures() -> None:
    files = {
        family: FileScore(raw, windows, 0, 0, ())
        for family, (raw, windows) in ARTIME_STANDARD.items()
    }
    corpus = score_corpus(files, STANDARD)
    assert corpus.windows == 97
    # 100 · (52.387 + 97)/(97 + 97) = 77.0
    assert corpus.normalised == pytest.approx(77.0, abs=0.05)
