"""The results as Markdown tables (targets with met/missed) and as raw JSON."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.configs import BIG_SHAPES, ENQUEUE, REMOTE, SEND, big_configs
from bench.suites import PICKUP_REPEATS, PICKUP_ROUNDS

DB_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
SHAPE_NAMES = {
    "plain": "plain, 1 KiB, 1 recipient",
    "attachment": "1 MiB binary attachment",
    "recipients50": "50 recipients",
}


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}"


def _target_ratio(value: float, goal: float) -> str:
    """``value`` as :func:`_ratio` writes it; where two decimals would round a miss up to the
    target itself, three, rounded down (1.399 against 1.4)."""
    shown = _ratio(value)
    if value < goal and shown == f"{goal:.2f}":
        return f"{math.floor(value * 1000) / 1000:.3f}"
    return shown


def _met(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "—"}[ok]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _all(values: Sequence[bool | None]) -> bool | None:
    known = [v for v in values if v is not None]
    return all(known) if known else None


#: Per database: the figure as shown, and whether it meets the target (None: not judged).
Values = dict[str, tuple[str, bool | None]]


# -- the targets ---------------------------------------------------------------------------------


def targets(results: dict[str, Any], dbs: Sequence[str]) -> list[dict[str, Any]]:
    """Each target of issue #4 with the value measured on each database and whether it holds."""
    out: list[dict[str, Any]] = []

    def add(what: str, target: str, values: Values) -> None:
        out.append({"what": what, "target": target, "values": values})

    for key, what, goal in (
        ("mailroom-send", "Send, one process (x raw smtplib, 1 connection)", 0.95),
        ("mailroom-worker", "Send, more than one connection: 1 process, 2 (x raw)", 1.4),
        ("mailroom-worker-procs", "Send, more than one connection: 2 processes x 1 (x raw)", 1.4),
        ("mailroom-worker-p2c2", "Send, more than one connection: 2 processes x 2 (x raw)", 1.4),
    ):
        values: Values = {}
        for db in dbs:
            row = results.get("send", {}).get(db, {}).get("summary", {}).get(key)
            if row is None:
                continue
            if "unavailable" in row:
                values[db] = ("not available yet", None)
            else:
                values[db] = (_with_rounds(row, goal), row["ratio"] >= goal)
        add(what, f"≥ {goal}", values)

    for key, what, goal in (
        ("enqueue-mailroom", "Enqueue, 1 per transaction (x best peer)", 1.0),
        ("bulk-mailroom", "Enqueue, bulk enqueue_many (x best peer's 1 per transaction)", 10.0),
    ):
        values = {}
        for db in dbs:
            row = results.get("enqueue", {}).get(db, {}).get("summary", {}).get(key)
            if row is not None:
                values[db] = (_with_rounds(row, goal), row["ratio"] >= goal)
        add(what, f"≥ {goal:g}", values)

    claim_values: Values = {}
    memory_values: Values = {}
    for db in dbs:
        depths = results.get("pickup", {}).get(db, {}).get("mailroom", {})
        measured = {int(d): v for d, v in depths.items() if "claim_seconds" in v}
        if len(measured) < 2:
            continue
        low, high = min(measured), max(measured)
        ratio = measured[high]["claim_seconds"] / measured[low]["claim_seconds"]
        label = f"{_ratio(ratio)} ({high:,} / {low:,})"
        claim_values[db] = (label, ratio <= 1.2 if (low, high) == (1000, 1_000_000) else None)
        rss = [v["rss_mb"] for v in measured.values()]
        spread = max(rss) - min(rss)
        memory_values[db] = (f"{spread:.1f} MB", spread <= 10)
    add("Pick-up of a batch at 1,000,000 queued (x at 1,000)", "≤ 1.2", claim_values)
    add("Worker peak memory across queue depths (max - min)", "≤ 10 MB", memory_values)

    query_values: Values = {}
    for db in dbs:
        q = results.get("queries", {}).get(db)
        if q is None:
            continue
        counts, inserts = q["queries"], q["attempt_inserts"]
        others = {counts[s] - inserts[s] for s in counts}
        label = " / ".join(str(counts[s]) for s in counts)
        notes = q.get("log_notes") or {}
        if any(notes.values()):
            label += " (+ " + " / ".join(str(notes[s]) for s in counts) + " outcome-log notes)"
        query_values[db] = (label, len(others) == 1)
    add(
        "Queries per batch (batch of " + " / ".join(_query_sizes(results)) + ")",
        "constant",
        query_values,
    )
    for row in out:
        row["met"] = _all([ok for _, ok in row["values"].values()])
    return out


def _with_rounds(row: dict[str, Any], goal: float) -> str:
    """The median ratio against ``goal``, and with more than one round the lowest and the
    highest round's in brackets: a target met or missed in every round, or only in some."""
    shown = _target_ratio(row["ratio"], goal)
    ratios = [r for r in row.get("ratios", []) if not math.isnan(r)]
    if len(ratios) < 2:
        return shown
    low, high = (_target_ratio(r, goal) for r in (min(ratios), max(ratios)))
    return f"{shown} ({low}-{high})"


def _query_sizes(results: dict[str, Any]) -> list[str]:
    for q in results.get("queries", {}).values():
        return list(q["queries"])
    return []


# -- the tables ----------------------------------------------------------------------------------


def _send_table(
    suites: dict[str, Any], dbs: Sequence[str], keys: Sequence[str], *, targets: bool = True
) -> list[str]:
    header = ["configuration"]
    for db in dbs:
        header += [f"{DB_NAMES[db]} msg/s", f"{DB_NAMES[db]} x raw"]
    header += [
        "peak RSS MB (" + " / ".join(DB_NAMES[d] for d in dbs) + ")",
        "pipelined",
        "envelope ahead",
    ]
    if targets:
        header += ["target", "met"]
    rows = []
    for key in keys:
        rowset = [suites.get(db, {}).get("summary", {}).get(key) for db in dbs]
        present = [r for r in rowset if r is not None]
        if not present:
            continue
        row: list[object] = [present[0]["name"]]
        oks: list[bool | None] = []
        target = present[0].get("target")
        for r in rowset:
            if r is None:
                row += ["", ""]
            elif "unavailable" in r:
                row += [r["unavailable"], ""]
                oks.append(None)
            else:
                row += [_rate(r["rate"]), _ratio(r["ratio"])]
                oks.append(r["ratio"] >= target if target is not None else None)
        rss = [f"{r['rss_mb']:.0f}" for r in rowset if r is not None and "rss_mb" in r]
        pipelined = max((r.get("pipelined", 0.0) for r in present), default=0.0)
        chained = max((r.get("chained", 0.0) for r in present), default=0.0)
        row += [" / ".join(rss) or "—", f"{pipelined:.0%}", f"{chained:.0%}"]
        if targets:
            row += [f"≥ {target}" if target else "", _met(_all(oks))]
        rows.append(row)
    return _table(header, rows)


def _commit_note(results: dict[str, Any], dbs: Sequence[str]) -> list[str]:
    """What writing each outcome before the next message's dot costs per message (mailroom's
    default against FLUSH_EVERY=100, same run; on SQLite also with the outcome log off),
    beside raw smtplib's whole message and the SQLite commit's idle time on this disk
    (bench/disk.py)."""
    costs = []
    for db in dbs:
        summary = results["send"].get(db, {}).get("summary", {})
        each, bulk, raw, commit_each = (
            summary.get(k)
            for k in (
                "mailroom-send",
                "mailroom-send-bulk-flush",
                "raw1",
                "mailroom-send-commit-each",
            )
        )
        if not (each and bulk and raw) or not all("rate" in r for r in (each, bulk, raw)):
            continue
        cost = 1000 / each["rate"] - 1000 / bulk["rate"]
        text = f"{DB_NAMES[db]} {cost:.2f} ms per message"
        if commit_each and "rate" in commit_each:
            # SQLite in a rollback journal: the default notes each outcome in the outcome log.
            slow = 1000 / commit_each["rate"] - 1000 / bulk["rate"]
            text += (
                f" (a note in the outcome log; {slow:.2f} ms with SQLITE_OUTCOME_LOG=False, a "
                "commit to the database per message)"
            )
        costs.append(f"{text}, against {1000 / raw['rate']:.2f} ms for raw smtplib's whole message")
    if not costs:
        return []
    lines = [
        "",
        "**What the barrier costs.** Median rates of `mailroom send` writing each outcome "
        "before the next message's final dot (the default: at most one duplicate per crash) "
        "and writing outcomes once per batch (`FLUSH_EVERY=100`), as time per message, "
        "subtracted: " + "; ".join(costs) + ".",
    ]
    probe = results.get("disk")
    if probe:
        rollback, wal = probe["rollback"], probe["wal"]
        each_ms = " and ".join(f"{ms:.2f}" for ms in rollback["each_ms"])
        lines[-1] += (
            " A commit to a SQLite database in a rollback journal is mostly the disk's: one "
            f"shaped like the outcome writer's takes {rollback['median_ms']:.2f} ms here with "
            f"the machine otherwise idle (`bench/disk.py`, {rollback['commits']:,} commits "
            f"before and after this suite, medians {each_ms}), longer under the send's load, "
            "and the server's handling of the final dot cannot start before it ends; in WAL "
            f"with `synchronous = NORMAL`, as the outcome log's notes are, "
            f"{wal['median_ms']:.2f} ms. A faster CPU makes raw smtplib faster, not the disk."
        )
    return lines


def _cpu_table(suites: dict[str, Any], dbs: Sequence[str], keys: Sequence[str]) -> list[str]:
    parts = ("client", "database", "sink")
    header = ["configuration"]
    for db in dbs:
        header += [f"{DB_NAMES[db]} {part}" for part in ("app", "database", "sink", "CPUs busy")]
    rows = []
    for key in keys:
        rowset = [suites.get(db, {}).get("summary", {}).get(key) for db in dbs]
        present = [r for r in rowset if r is not None and "cpu_us_per_message" in r]
        if not present:
            continue
        row: list[object] = [present[0]["name"]]
        for r in rowset:
            cpu = (r or {}).get("cpu_us_per_message", {})
            row += [f"{cpu[p]:.0f}" if p in cpu else "—" for p in parts]
            # CPU per message times messages per second: how many CPUs the three kept busy.
            busy = sum(cpu[p] for p in parts if p in cpu) * (r or {}).get("rate", 0) / 1e6
            row.append(f"{busy:.2f}" if cpu and busy else "—")
        rows.append(row)
    return _table(header, rows)


def _enqueue_table(suites: dict[str, Any], dbs: Sequence[str]) -> list[str]:
    header = ["API"]
    for db in dbs:
        header += [f"{DB_NAMES[db]} msg/s", f"{DB_NAMES[db]} x best peer"]
    header += ["target", "met"]
    rows = []
    for config in ENQUEUE:
        rowset = [suites.get(db, {}).get("summary", {}).get(config.key) for db in dbs]
        if not any(rowset):
            continue
        row: list[object] = [config.name]
        oks: list[bool | None] = []
        for r in rowset:
            if r is None:
                row += ["", ""]
                continue
            row += [_rate(r["rate"]), _ratio(r["ratio"])]
            oks.append(r["ratio"] >= config.target if config.target is not None else None)
        row += [f"≥ {config.target:g}" if config.target else "", _met(_all(oks))]
        rows.append(row)
    return _table(header, rows)


def _pickup_tables(pickup: dict[str, Any], dbs: Sequence[str]) -> list[str]:
    lines = [
        "mailroom: `claiming.claim()` of one batch of 100, each released again: the median "
        f"of {PICKUP_REPEATS}, made in {PICKUP_ROUNDS} rounds over every depth (a database "
        "per depth; one warm-up claim per round, not counted), so that the disk's slow "
        "spells fall on all depths alike; and the peak RSS of a fresh worker process that "
        "claims one batch and sends it to the sink.",
        "",
    ]
    depths = sorted({int(d) for db in dbs for d in pickup.get(db, {}).get("mailroom", {})})
    header = ["queue depth"]
    for db in dbs:
        header += [f"{DB_NAMES[db]} claim ms", f"{DB_NAMES[db]} worker peak RSS MB"]
    rows = []
    for depth in depths:
        row: list[object] = [f"{depth:,}"]
        for db in dbs:
            v = pickup.get(db, {}).get("mailroom", {}).get(str(depth), {})
            row += (
                [f"{v['claim_seconds'] * 1000:.2f}", f"{v['rss_mb']:.1f}"]
                if "claim_seconds" in v
                else ["", ""]
            )
        rows.append(row)
    lines += _table(header, rows)
    peers = [a for a in ("mailer", "post_office") if any(a in pickup.get(db, {}) for db in dbs)]
    if peers:
        lines += [
            "Peers: the first batch as their sender picks it (django-mailer iterates "
            "`prioritize()`, which loads the whole queue; post_office `get_queued()`), "
            "median of 3, and that process's peak RSS. Measured up to 100,000 queued.",
            "",
        ]
        header = ["queue depth"]
        for app in peers:
            for db in dbs:
                header.append(f"{app} {DB_NAMES[db]} ms / MB")
        rows = []
        for depth in depths:
            row = [f"{depth:,}"]
            for app in peers:
                for db in dbs:
                    v = pickup.get(db, {}).get(app, {}).get(str(depth), {})
                    if "pickup_seconds" in v:
                        row.append(f"{v['pickup_seconds'] * 1000:.1f} / {v['rss_mb']:.0f}")
                    else:
                        row.append("skipped" if "skipped" in v else "")
            rows.append(row)
        lines += _table(header, rows)
    return lines


def _queries_table(queries: dict[str, Any], dbs: Sequence[str]) -> list[str]:
    sizes = next((list(q["queries"]) for q in queries.values()), [])
    bulk = any(q.get("bulk_flush") for q in queries.values())
    # The notes column only for a database that has notes (SQLite in a rollback journal).
    noting = {db for db, q in queries.items() if any((q.get("log_notes") or {}).values())}
    header = ["batch size"]
    for db in dbs:
        header.append(f"{DB_NAMES[db]} queries (attempt INSERTs)")
        if db in noting:
            header.append(f"{DB_NAMES[db]} notes in the outcome log")
        if bulk:
            header.append(f"{DB_NAMES[db]} with FLUSH_EVERY = batch size")
    rows = []
    for size in sizes:
        row: list[object] = [size]
        for db in dbs:
            q = queries.get(db)
            row.append(f"{q['queries'][size]} ({q['attempt_inserts'][size]})" if q else "")
            if db in noting:
                row.append(q["log_notes"][size])
            if bulk:
                row.append(q.get("bulk_flush", {}).get(size, "") if q else "")
        rows.append(row)
    return [
        *_table(header, rows),
        "Counted on every connection, with mailroom's settings as shipped (the target applies "
        "to these): by default each outcome is its own write, before the next message is "
        "handed over (PostgreSQL: one statement, sent without waiting and counted too; "
        "elsewhere: BEGIN, INSERT, UPDATE, COMMIT on the writer's connection), so the count "
        "grows by that much per message. With FLUSH_EVERY at least the batch size it is the "
        "same for every batch size; `tests/integration/test_queries_per_batch.py` asserts "
        "both. On SQLite in a rollback journal each outcome's write is a note in the outcome "
        "log instead (`mailroom.outcome_log`: one INSERT per message in a WAL file of "
        "mailroom's own beside the database, not a query to the database, counted apart), and "
        "the database takes the batch's outcomes in one write at its end.",
        "",
    ]


#: How far apart (max - min, over the median) the reference's rounds may be before a run is
#: called unsteady: its ratios then say more about the machine's neighbours than about what
#: was measured.
UNSTEADY = 0.25


def _steadiness(results: dict[str, Any], dbs: Sequence[str]) -> list[str]:
    """How steady the machine was: raw smtplib over one connection, round by round, and the
    CPU time the hypervisor gave elsewhere."""
    parts, unsteady = [], []
    for db in dbs:
        rates = [r["raw1"]["rate"] for r in results.get("send", {}).get(db, {}).get("rounds", [])]
        rates = [rate for rate in rates if rate]
        if len(rates) < 2:
            continue
        spread = (max(rates) - min(rates)) / statistics.median(rates)
        each = " / ".join(_rate(rate) for rate in rates)
        parts.append(f"{each} msg/s on {DB_NAMES[db]} ({spread:.0%} apart)")
        if spread > UNSTEADY:
            unsteady.append(DB_NAMES[db])
    steal = results["environment"].get("steal")
    lines = []
    if parts:
        lines.append(
            "- Steadiness: raw smtplib over one connection, the reference of every send ratio, "
            f"ran at {' and '.join(parts)} from round to round"
            + (
                f"; other machines took {steal:.1%} of the CPU time (steal)."
                if steal is not None
                else "."
            )
        )
    if unsteady:
        lines.append(
            f"- **Unsteady run** ({', '.join(unsteady)}): the reference moved more than "
            f"{UNSTEADY:.0%} between rounds, so the send ratios say more about the machine's "
            "neighbours than about what was measured. Run again on a quieter machine."
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    env, opts = results["environment"], results["options"]
    dbs = list(opts["dbs"])
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    lines = [
        "# mailroom benchmark results",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {env['date']}; took {results['seconds'] / 60:.1f} min",
        f"- Machine: {env['cpus']} CPUs ({env['cpu']}), {env['memory_gib']} GiB memory; "
        f"{env['os']}",
        f"- Python {env['python']}; SQLite {env['sqlite']}; PostgreSQL {env['postgresql']}",
        f"- Packages: {packages}",
        f"- mailroom at commit {env['commit']}",
        f"- {opts['messages']:,} messages per send and enqueue run, {opts['big_messages']} per "
        f"big-message run; {opts['rounds']} round(s), configurations alternated, order rotated "
        "each round; medians over rounds; ratios are medians of per-round ratios. "
        "Absolute rates drift ±25 % between runs on shared machines: compare ratios.",
        *_steadiness(results, dbs),
        "",
        "## Targets (issue #4)",
        "",
    ]
    rows = []
    for t in results["targets"]:
        row = [t["what"], t["target"]]
        row += [t["values"].get(db, ("not measured", None))[0] for db in dbs]
        rows.append([*row, _met(t["met"])])
    lines += _table(["measure", "target", *(DB_NAMES[d] for d in dbs), "met"], rows)
    lines += [
        "Send and enqueue ratios are medians over rounds; in brackets, the lowest and the "
        "highest round's. Met or missed is the median's.",
        "",
    ]
    if results.get("send"):
        lines += [
            f"## Send throughput ({SHAPE_NAMES['plain']}, {opts['messages']:,} messages)",
            "",
            "x raw: the median of per-round ratios to raw smtplib over one connection "
            "(pre-rendered bytes) in the same round. The sink offers PIPELINING (RFC 2920), "
            'as Postfix, Exim and the ESPs\' SMTP endpoints do; "pipelined" is the share of '
            "mail transactions it received with MAIL, RCPT and DATA in one group, "
            '"envelope ahead" the share whose group came in the same write as the previous '
            "message's final dot (one round trip a message). smtplib, "
            "Django's backend and the peers send one command at a time.",
            "",
        ]
        lines += _send_table(results["send"], dbs, [c.key for c in SEND])
        lines += _commit_note(results, dbs)
        lines += [
            "",
            "### CPU per message",
            "",
            "Microseconds of CPU per message sent, medians over rounds: the sending process "
            "(with its child processes), the database server (PostgreSQL: all its processes; "
            "SQLite runs inside the sending process) and the sink. The machine has "
            f"{env['cpus']} CPUs for all three. CPUs busy: the three together times the "
            f"median rate, how many of those CPUs the configuration kept busy ({env['cpus']}: "
            "the CPUs were the limit; less: something else was, a round trip, a lock, the "
            "disk).",
            "",
        ]
        lines += _cpu_table(results["send"], dbs, [c.key for c in SEND])
    if results.get("big"):
        lines += [f"## Big messages ({opts['big_messages']} messages each)", ""]
        for shape in BIG_SHAPES:
            suites = {db: results["big"][db][shape] for db in dbs if db in results["big"]}
            lines += [f"### {SHAPE_NAMES[shape]}", ""]
            lines += _send_table(suites, dbs, [c.key for c in big_configs(shape)])
    if results.get("remote"):
        first = next(iter(results["remote"].values()))
        lines += [
            f"## A mail server {first['delay_ms']:g} ms away ({opts['remote_messages']} messages)",
            "",
            f"The same sink behind a proxy that delivers every chunk {first['delay_ms']:g} ms "
            f"after reading it, each way (`bench/latency.py`): a round trip costs "
            f"{2 * first['delay_ms']:g} ms, as to a relay or an ESP's SMTP endpoint a network "
            "away, and the number of round trips per message sets the pace. x raw: to raw "
            "smtplib over one connection through the same proxy, same round.",
            "",
        ]
        # Issue #4's targets are set against the local sink; this table has none.
        lines += _send_table(results["remote"], dbs, [c.key for c in REMOTE], targets=False)
        lines += [""]
    if results.get("enqueue"):
        lines += [
            f"## Enqueue ({opts['messages']:,} messages)",
            "",
            "x best peer: the median of per-round ratios to the faster of django-mailer "
            "and django-post_office, one message per call and transaction, same round.",
            "",
        ]
        lines += _enqueue_table(results["enqueue"], dbs)
    if results.get("pickup"):
        lines += ["## Cost of picking one batch of 100 as the queue grows", ""]
        lines += _pickup_tables(results["pickup"], dbs)
    if results.get("queries"):
        lines += ["## Database queries per batch (one happy-path `Engine.run_batch`)", ""]
        lines += _queries_table(results["queries"], dbs)
    return "\n".join(lines).rstrip() + "\n"


def write(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    path = directory / "latest.md"
    path.write_text(markdown(results))
    return path
