"""Writes docs/faults.md from the figures the fault cases recorded (target/faults/*.json) and
nextest's JUnit report of the run (the cases that failed, with the first line of the reason)."""

import json
import pathlib
import sys
import xml.etree.ElementTree as ET


def reason_of(element: ET.Element, case: ET.Element) -> str:
    """The line after the first panic in a failed attempt's output, else its message."""
    texts = [element.text or ""]
    for holder in (element, case):
        texts += [(holder.find(t).text or "") for t in ("system-err", "system-out") if holder.find(t) is not None]
    lines = "\n".join(texts).splitlines()
    reason = element.get("message") or "failed"
    for i, line in enumerate(lines):
        if "panicked at" in line:
            following = [l.strip() for l in lines[i + 1 : i + 4] if l.strip()]
            if following:
                reason = following[0]
            break
    return reason[:400]


def failures(junit: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(test, reason) of each case that failed, and of each failed attempt of a case that
    passed on a retry (the profile retries the broker cases: see .config/nextest.toml)."""
    path = pathlib.Path(junit)
    if not path.exists():
        return [], []
    failed, retried = [], []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        failure = case.find("failure")
        if failure is not None:
            failed.append((name, reason_of(failure, case)))
        for attempt in case.findall("flakyFailure") + case.findall("rerunFailure"):
            retried.append((name, reason_of(attempt, attempt)))
    return failed, retried


def main(results: str, junit: str, out: str) -> None:
    cases = [json.loads(p.read_text()) for p in sorted(pathlib.Path(results).glob("*.json"))]
    if not cases:
        sys.exit(f"no results in {results}: run the fault suite first")
    shape = {(c["rate"], c["seconds"]) for c in cases}
    rate, seconds = sorted(shape)[0]
    lines = [
        "# Fault suite results",
        "",
        "Written by `make faults` (dev/faults.sh, dev/faults_report.py): each case of",
        "`crates/cli/tests/faults` under a steady open-model load of "
        f"{rate:g} requests/s for {seconds:g} s against",
        "the local stack, with the fault injected mid-load. `make test` runs the same cases under a",
        "lighter, shorter load. The oracle of every case: each acknowledged event (202, or 200 for a",
        "duplicate of it) is in Kafka exactly once under the id it was given, and reached every",
        "subscriber at least once. *Unconfirmed* events got a 503 (`kafka_unavailable`, or",
        "`in_flight` while another request of the event was being written) or no answer, yet are in Kafka: the sender was told to retry, so they are at",
        "least once (*written again* when its retry wrote a second record).",
        "",
        "| case | fault | requests | 202 | 200 dup | 503 | no answer | lost | written twice | unconfirmed | deliveries (duplicates) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        s = c["statuses"]
        deliveries = ", ".join(
            f'{d["subscription"]}: {d["deliveries"]} ({d["duplicates"]})' for d in c["deliveries"]
        )
        lines.append(
            f'| `{c["case"]}` | {c["fault"]} | {c["requests"]} | {s.get("202", 0)} | '
            f'{s.get("200", 0)} | {s.get("503", 0)} | {c["no_answer"]} | '
            f'**{c["lost"]}** | {c["written_twice"]} | {c["unconfirmed_in_kafka"]} '
            f'({c.get("written_again", 0)} written again) | {deliveries} |'
        )
    lines += ["", "## Notes per case", ""]
    for c in cases:
        lines.append(f'- `{c["case"]}` (p99 {c["p99_ms"]:.0f} ms): {c["notes"]}')
    failed, retried = failures(junit)
    if failed:
        lines += ["", "## Cases that failed at this load", ""]
        for name, reason in failed:
            lines.append(f"- `{name}`: {reason}")
    if retried:
        lines += [
            "",
            "## Attempts that were retried",
            "",
            "The broker cases get up to two more attempts, because tansu's sqlite storage can panic",
            "under them (docs/development.md); every failed attempt is listed, whatever its reason.",
            "",
        ]
        for name, reason in retried:
            lines.append(f"- `{name}`: {reason}")
    lines.append("")
    pathlib.Path(out).write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
