"""The run's curves as PNG plots and a one-page report.html (matplotlib, Agg backend)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

CURVES = (
    ("pass_rate", "pass rate"),
    ("reward", "mean reward"),
    ("loss/policy", "policy loss"),
    ("kl", "KL to reference"),
    ("rm/accuracy", "reward model accuracy"),
    ("wall_seconds", "step seconds"),
)


def collect_stats(bucket) -> list[dict[str, Any]]:
    """Every step's stats, ascending by step."""
    rows = []
    for step in bucket.list_stats():
        stats = bucket.read_stats(step)
        if stats is not None:
            rows.append({"step": step, **stats})
    return rows


def plot_curves(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """One PNG with a panel per curve that has data; None if there is nothing to plot."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    present = [(key, title) for key, title in CURVES if any(key in r for r in rows)]
    if not present:
        return None
    cols = 3
    nrows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, present, strict=False):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(
    run_name: str, rows: list[dict[str, Any]], out_dir: Path, extra: dict[str, Any] | None = None
) -> Path:
    """report.html (summary table + curves.png) in `out_dir`; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_curves(rows, out_dir / "curves.png")
    keys = ["step"] + [k for k, _ in CURVES]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = ""
    for r in rows:
        cells = "".join(
            f"<td>{r[k]:.4g}</td>"
            if isinstance(r.get(k), float)
            else f"<td>{html.escape(str(r.get(k, '')))}</td>"
            for k in keys
        )
        body += f"<tr>{cells}</tr>\n"
    facts = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in (extra or {}).items()
    )
    image = '<img src="curves.png" alt="training curves">' if png else "<p>No steps finished yet.</p>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(run_name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}</style></head>
<body><h1>OREAL run {html.escape(run_name)}</h1><ul>{facts}</ul>{image}
<table><tr>{head}</tr>
{body}</table></body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path
