"""Draws the dashboards from the data of the dashboard test (crates/cli/tests/e2e/dashboards.rs):
the panels of each dashboard, placed as Grafana places them, from what a real Prometheus scraped
off a loaded ingress and worker. Run by `make dashboard-pictures`:

    python dev/dashboard_png.py DATA.json OUT_DIR
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

UNITS = {
    "reqps": ("/s", 1.0),
    "percentunit": ("%", 100.0),
    "s": ("ms", 1000.0),
    "bytes": ("B", 1.0),
    "short": ("", 1.0),
}


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template or "")
    return text.strip() or ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__")


def points(result: dict) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for t, v in result.get("values", []):
        value = float(v)
        if math.isfinite(value):
            xs.append(float(t))
            ys.append(value)
    return xs, ys


def draw(dashboard: dict, start: float, out: Path) -> None:
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(16, rows * 0.5))
    grid = fig.add_gridspec(rows, 24, hspace=4.0, wspace=1.5, top=0.95)
    for p in panels:
        pos = p["gridPos"]
        ax = fig.add_subplot(grid[pos["y"]:pos["y"] + pos["h"], pos["x"]:pos["x"] + pos["w"]])
        suffix, scale = UNITS.get(p["unit"], ("", 1.0))
        ax.set_title(p["title"], fontsize=9, loc="left")
        if p["type"] == "stat":
            values = [points(r)[1] for t in p["targets"] for r in t["result"]]
            last = next((v[-1] for v in values if v), float("nan"))
            ax.text(0.5, 0.45, f"{last * scale:,.3g}{suffix}", ha="center", va="center",
                    fontsize=22, color="#1f6feb")
            ax.axis("off")
            continue
        drawn = 0
        for target in p["targets"]:
            for result in target["result"]:
                xs, ys = points(result)
                # Series that stay at 0 (outcomes that never happened) would bury the rest.
                last = target is p["targets"][-1] and result is target["result"][-1]
                if xs and (any(ys) or drawn == 0 and last):
                    label = (legend(target["legend"], result.get("metric", {}))
                             if any(ys) else "every series 0")
                    drawn += 1
                    ax.plot([x - start for x in xs], [y * scale for y in ys], linewidth=1.2,
                            label=label)
        ax.set_ylabel(suffix, fontsize=7)
        ax.tick_params(labelsize=7)
        if pos["y"] + pos["h"] == rows:
            ax.set_xlabel("seconds since the load started", fontsize=7)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=6, loc="upper left", ncol=2 if len(handles) > 6 else 1)
    fig.suptitle(f"{dashboard['title']}: Prometheus data from a loaded local ingress and worker "
                 "(series that stay at 0 are left out)",
                 fontsize=11, x=0.01, y=0.99, ha="left")
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = json.loads(Path(argv[0]).read_text())
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    for dashboard in data["dashboards"]:
        out = out_dir / dashboard["file"].replace(".json", ".png")
        draw(dashboard, data["start"], out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
