"""The overload step's part of docs/benchmarks.md: its row in the goals table, and the seconds
of each try that missed a goal (the overload second by second, the seconds after it until it
counted as recovered)."""

from __future__ import annotations

# The step's goals, as `Overload::met` in loadtest/src/overload.rs keeps them.
ANSWERED_GOAL = 0.95
RECOVERED_WITHIN_S = 10


def answered_met(o: dict) -> bool:
    return o["answered_within_1s"] >= ANSWERED_GOAL


def recovery_met(o: dict) -> bool:
    return o["recovered_after_s"] is not None and o["recovered_after_s"] <= RECOVERED_WITHIN_S


def missed(o: dict) -> list[str]:
    """The goals `o` missed, as the page names them."""
    return [
        *([f"answered {o['answered_within_1s'] * 100:.1f}% within 1 s"] if not answered_met(o) else []),
        *(
            [
                "never recovered within the step" if o["recovered_after_s"] is None
                else f"recovered after {o['recovered_after_s']:.0f} s"
            ]
            if not recovery_met(o)
            else []
        ),
    ]


def answered_row(o: dict | None) -> str:
    if not o:
        return "not run"
    row = (
        f"{o['answered_within_1s'] * 100:.1f}% at {o['rate']:.0f} /s ({o['refused'] * 100:.1f}% refused, "
        f"p99 of the 202s {o['p99_accepted_ms']:.0f} ms, {o['cpu_us_per_req']:.0f} µs CPU per request)"
    )
    if first := o.get("first_try"):
        row += f"; a second try: the first {' and '.join(missed(first))}"
    return row


def recovery_row(o: dict | None) -> str:
    if not o:
        return "not run"
    return "never within the step" if o["recovered_after_s"] is None else f"{o['recovered_after_s']:.0f} s"


def window_rows(windows: list[dict], sign: str) -> list[str]:
    return [
        "| second | accepted | refused (503) | failed | answered within 1 s | p99 |",
        "|---|---|---|---|---|---|",
        *(
            f"| {sign}{w['second']} | {w['accepted']:,} | {w['refused']:,} | {w['failed']:,} | "
            f"{w.get('within_1s', 0):,} | {w['p99_ms']:.0f} ms |"
            for w in windows
        ),
        "",
    ]


def unrecovered(o: dict) -> list[dict]:
    """The seconds after the overload before it counted as recovered (all when it never did)."""
    windows = o.get("after_windows") or []
    recovered = o.get("recovered_after_s")
    return windows if recovered is None else windows[: int(recovered)]


def tries(r: dict) -> list[str]:
    """The seconds of each try that missed a goal, and of the last try's recovery."""
    o = r.get("overload")
    if not o:
        return []
    lines = []
    first = o.get("first_try")
    if first:
        lines += [
            f"The overload step's first try {' and '.join(missed(first))}, so it was measured once",
            "more, as a missed rate of the sweep is; the goals table gives the second try.",
            "",
        ]
    for name, t in ([("first try", first), ("second try", o)] if first else [("step", o)]):
        if not answered_met(t) and t.get("during_windows"):
            lines += [
                f"The overload in this run's {name}, second by second (by when the requests were due):",
                "",
                *window_rows(t["during_windows"], ""),
            ]
        if t is first and not recovery_met(t) and unrecovered(t):
            lines += [
                f"The seconds after the overload in this run's {name}"
                + (", which never counted as recovered:" if t["recovered_after_s"] is None else ", before it counted as recovered:"),
                "",
                *window_rows(unrecovered(t), "+"),
            ]
    shown = unrecovered(o)
    if not o.get("after_windows"):
        return lines
    if not shown:
        which = "this run's second try" if first else "this run"
        return lines + [f"In {which} the first second after the overload already counted as recovered.", ""]
    which = "this run's second try" if first else "this run"
    return lines + [
        (
            f"The seconds after the overload before it counted as recovered in {which}"
            if o.get("recovered_after_s") is not None
            else f"The seconds after the overload in {which}, which never counted as recovered"
        )
        + " (by when the requests were due):",
        "",
        *window_rows(shown, "+"),
    ]
