"""The benchmark report's targets table gives each ratio with the spread of its rounds, so a
reader sees whether a target was met or missed in every round or only in the median."""

from __future__ import annotations

from typing import Any

from bench import report


def send(ratios: list[float]) -> dict[str, Any]:
    median = sorted(ratios)[len(ratios) // 2]
    row = {"ratio": median, "ratios": ratios}
    return {"send": {"postgres": {"summary": {"mailroom-worker": row}}}}


def worker_target(results: dict[str, Any]) -> tuple[str, bool | None]:
    (row,) = [t for t in report.targets(results, ["postgres"]) if "1 process, 2" in t["what"]]
    return row["values"]["postgres"]


def test_the_median_decides_and_the_rounds_are_shown_beside_it() -> None:
    assert worker_target(send([1.31, 1.49, 1.77])) == ("1.49 (1.31-1.77)", True)
    assert worker_target(send([1.20, 1.23, 1.41])) == ("1.23 (1.20-1.41)", False)


def test_a_miss_that_rounds_to_the_target_keeps_three_decimals() -> None:
    assert worker_target(send([1.3996, 1.3998, 1.45])) == ("1.399 (1.399-1.45)", False)


def test_one_round_shows_the_ratio_alone() -> None:
    assert worker_target(send([1.5])) == ("1.50", True)
