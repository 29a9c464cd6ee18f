"""The benchmark report says how steady the machine was, and calls a run unsteady when its
reference (raw smtplib over one connection) moved too far between rounds."""

from __future__ import annotations

from typing import Any

from bench import environment, report


def results(rates: dict[str, list[float]], steal: float | None = 0.004) -> dict[str, Any]:
    return {
        "environment": {"steal": steal},
        "send": {
            db: {"rounds": [{"raw1": {"rate": r}} for r in each]} for db, each in rates.items()
        },
    }


def test_a_steady_run_gives_each_round_of_the_reference_and_the_steal() -> None:
    lines = report._steadiness(results({"sqlite": [1036, 901, 939]}), ["sqlite"])
    assert lines == [
        "- Steadiness: raw smtplib over one connection, the reference of every send ratio, "
        "ran at 1,036 / 901 / 939 msg/s on SQLite (14% apart) from round to round; other "
        "machines took 0.4% of the CPU time (steal)."
    ]


def test_a_reference_that_moved_more_than_a_quarter_makes_the_run_unsteady() -> None:
    rates = {"sqlite": [1036, 901, 939], "postgres": [851, 449, 856]}
    lines = report._steadiness(results(rates, steal=None), ["sqlite", "postgres"])
    assert lines[0].endswith("PostgreSQL (48% apart) from round to round.")
    assert lines[1].startswith("- **Unsteady run** (PostgreSQL): ")


def test_one_round_or_no_send_suite_says_nothing() -> None:
    assert report._steadiness(results({"sqlite": [1000]}, steal=None), ["sqlite"]) == []
    assert report._steadiness({"environment": {}}, ["sqlite"]) == []


def test_steal_is_the_share_of_the_cpu_time_that_passed() -> None:
    # user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice
    before = [100, 0, 50, 800, 10, 0, 5, 35, 0, 0]
    after = [200, 0, 80, 1500, 10, 0, 5, 205, 0, 0]
    assert environment.steal_share(before, after) == 170 / 1000
    assert environment.steal_share(None, after) is None
    assert environment.steal_share(before, before) is None
    assert environment.cpu_times() is None or len(environment.cpu_times() or []) >= 8
