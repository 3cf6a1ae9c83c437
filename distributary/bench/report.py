"""A sweep's outputs: the terminal table, the JSON file, the Markdown report and the PNG plot.

One table row per (scenario, runner, N): distributary's wall time (median, min-max over repeats) next to the raw
baseline's (per item, and hand-batched where measured) and Prefect's, overhead per task above raw, tasks per
second, driver peak memory and the cluster's start-up time. matplotlib is imported only by `plot()` (Agg canvas, no pyplot, no global backend change).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .fit import Advice, advise, fit_runners
from .measure import Measurement
from .sweep import SweepResult
from .targets import Target, check_targets

HEADERS = ["scenario", "runner", "N", "wall s (min-max)", "raw s", "x raw", "overhead us/task", "tasks/s",
           "peak MB (raw)", "RSS+ MB (raw)", "start-up s", "prefect s", "hand-batched s (x)", "bag s (x)"]
NUMERIC = {2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _mb(m: Measurement | None, rss: bool = False) -> str:
    value = None if m is None else (m.rss_peak_bytes if rss else m.peak_bytes)
    return "-" if value is None else f"{value / 2**20:.3g}"


def _mb_pair(ours: Measurement, raw: Measurement | None, rss: bool = False) -> str:
    own = _mb(ours, rss)
    theirs = _mb(raw, rss) if raw is not None else "-"
    return own if theirs == "-" else f"{own} ({theirs})"


def rows(result: SweepResult) -> list[list[str]]:
    """The table's rows (strings), in sweep order."""
    out: list[list[str]] = []
    index = {(m.scenario, m.runner, m.impl, m.n): m for m in result.measurements}
    seen: set[tuple[str, str, int]] = set()
    for m in result.measurements:
        key = (m.scenario, m.runner, m.n)
        if key in seen or m.impl == "prefect" and (m.scenario, m.runner, "distributary", m.n) in index:
            continue
        seen.add(key)
        ours = index.get((m.scenario, m.runner, "distributary", m.n))
        raw = index.get((m.scenario, m.runner, "raw", m.n))
        prefect = index.get((m.scenario, m.runner, "prefect", m.n))
        batched = index.get((m.scenario, m.runner, "raw_batched", m.n))
        bag = index.get((m.scenario, m.runner, "raw_bag", m.n))
        startup = next((x.startup_s for x in (ours, raw, prefect) if x is not None), None)
        if ours is None or not ours.ok:
            why = ours.error if ours is not None and ours.error else "not run"
            out.append([m.scenario, m.runner, f"{m.n:,}", _short(why), _wall_or_error(raw), "", "", "", "", "",
                        _num(startup), _wall_or_error(prefect), _wall_or_error(batched), _wall_or_error(bag)])
            continue
        wall = f"{_num(ours.wall)} ({_num(ours.wall_min)}-{_num(ours.wall_max)})"
        ratio = over = ""
        if raw is not None and raw.ok:
            ratio = f"{ours.wall / raw.wall:.2f}"
            over = _num((ours.wall - raw.wall) / ours.n * 1e6)
        out.append([m.scenario, m.runner, f"{m.n:,}", wall, _wall_or_error(raw), ratio, over, _num(ours.tasks_per_s),
                    _mb_pair(ours, raw), _mb_pair(ours, raw, rss=True), _num(startup), _wall_or_error(prefect),
                    _against(ours, batched), _against(ours, bag)])
    return out


def headline_rows(result: SweepResult) -> list[list[str]]:
    """The rows at the largest N each (scenario, runner) reached with distributary: a table that fits a page."""
    best: dict[tuple[str, str], int] = {}
    for m in result.measurements:
        if m.impl == "distributary" and m.ok:
            best[(m.scenario, m.runner)] = max(best.get((m.scenario, m.runner), 0), m.n)
    keep = [r for r in rows(result) if best.get((r[0], r[1])) == int(r[2].replace(",", ""))]
    order = {name: i for i, name in enumerate(result.scenarios())}
    return sorted(keep, key=lambda r: order.get(r[0], len(order)))  # stable: runners stay in sweep order


def _against(ours: Measurement, base: Measurement | None) -> str:
    """A baseline's wall and ours as a multiple of it: "2.24 (1.10x)"."""
    if base is None or not base.ok:
        return _wall_or_error(base)
    return f"{_num(base.wall)} ({ours.wall / base.wall:.2f}x)"


def _short(text: str, limit: int = 40) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _wall_or_error(m: Measurement | None) -> str:
    if m is None:
        return "-"
    if m.ok:
        return _num(m.wall)
    return "failed" if m.error and not m.error.startswith("skipped") else "skipped"


def format_table(table_rows: list[list[str]], headers: list[str] = HEADERS, markdown: bool = False,
                 numeric: set[int] = NUMERIC) -> str:
    """A plain-text table (Markdown pipe table with `markdown=True`); columns in `numeric` right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in table_rows)) if table_rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return ("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts).rstrip()

    sep = ("|" + "|".join(("-" * (w + 1) + ":") if i in numeric else "-" * (w + 2)
                          for i, w in enumerate(widths)) + "|") if markdown else "  ".join("-" * w for w in widths)
    body = [line(headers), sep]
    previous = None
    for r in table_rows:
        if not markdown and previous is not None and r[0] != previous:
            body.append("")
        body.append(line(r))
        previous = r[0]
    return "\n".join(body)


def terminal_table(result: SweepResult) -> str:
    return format_table(rows(result))


def startup_lines(result: SweepResult) -> list[str]:
    return [f"{b['runner']}: {b['startup_s']:.2f} s" + (f" ({b['address']})" if b.get("address") else "")
            for b in result.backends if b.get("startup_s") is not None]


def default_advice(result: SweepResult, n: int | None = None, task_seconds: float = 0.0) -> Advice | None:
    """Advice for the user's size (`n`), else for the largest N measured, on the sweep's main scenario."""
    ok = [m for m in result.measurements if m.impl == "distributary" and m.ok]
    if not ok:
        return None
    user = result.config.get("user_flow")
    scenario = user if user else ("fanout" if any(m.scenario == "fanout" for m in ok) else ok[0].scenario)
    n = n or max(m.n for m in ok if m.scenario == scenario)
    return advise(result, n=n, task_seconds=task_seconds, scenario=scenario)


def targets_text(targets: list[Target]) -> str:
    return "\n".join(f"{t.status:<12} {t.name}\n             {t.summary()}" for t in targets)


def errors(result: SweepResult) -> list[str]:
    return [f"{m.scenario} {m.runner} {m.impl} N={m.n}: {m.error}" for m in result.measurements if m.error]


# ---------------------------------------------------------------------------------------------------------------
def to_json(result: SweepResult, path: Path, advice: Advice | None, targets: list[Target]) -> Path:
    """Every measurement, the machine, versions, fits, targets and advice."""
    data = result.to_dict()
    fits: dict[str, Any] = {}
    for scenario in result.scenarios():
        costs = fit_runners(result.measurements, scenario)
        fits[scenario] = {r: {"startup_s": c.startup_s, "fixed_s": c.fixed_s, "per_task_s": c.per_task_s,
                              "parallelism": c.parallelism, "rel_rmse": c.fit.rel_rmse} for r, c in costs.items()}
    data["fits"] = fits
    data["targets"] = [t.to_dict() for t in targets]
    if advice is not None:
        data["advice"] = {"runner": advice.runner, "runner_label": advice.runner_label, "n": advice.n,
                          "task_seconds": advice.task_seconds, "scenario": advice.scenario,
                          "explanation": advice.explanation}
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


def to_markdown(result: SweepResult, path: Path, advice: Advice | None, targets: list[Target],
                plot_name: str | None) -> Path:
    m = result.machine
    pkgs = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items() if v)
    load = result.load or {}
    cfg = result.config
    lines = ["# distributary bench report", "",
             f"- When: {result.started} to {result.finished}",
             *(f"- Command: `{_command(argv)}`" for argv in cfg.get("commands") or [cfg.get("command") or []]),
             f"- Machine: {m.get('cpus')} CPUs, {_gib(m.get('memory_total_bytes'))}, {m.get('platform')}",
             f"- Python {m.get('python')} ({m.get('implementation')}); {pkgs}",
             f"- Machine load during the sweep (1-minute load average, sampled at every point): mean "
             f"{_num(load.get('mean_1min'))}, max {_num(load.get('max_1min'))} on {load.get('cpus')} CPUs "
             f"(other programs ran alongside; raw and distributary runs alternate, so both saw the same load)",
             f"- Repeats per point: {cfg.get('repeat')} (median, min-max). Driver memory: \"peak MB\" is tracemalloc's "
             f"peak (Python allocations) in one extra run, N <= {cfg.get('memory_max_n', 0):,}; \"RSS+ MB\" the "
             f"largest growth of the resident set over the timed runs (native memory too)", ""]
    if startup_lines(result):
        lines += ["## Cluster start-up (once per runner, not in the wall times)", ""]
        lines += [f"- {s}" for s in startup_lines(result)] + [""]
    if targets:
        lines += ["## Targets", ""]
        lines += [f"- **{t.status}**: {t.name}. {t.summary()}." for t in targets] + [""]
    if advice is not None:
        lines += ["## Advice", "", "```", advice.explanation, "```", ""]
    lines += ["## Headline: the largest N of each scenario and runner", "",
              format_table(headline_rows(result), markdown=True), "",
              "## Results", "", format_table(rows(result), markdown=True), ""]
    if plot_name:
        lines += ["## Plot", "", f"![wall time and per-task cost against N]({plot_name})", ""]
    notes = result.notes + errors(result)
    if notes:
        lines += ["## Notes, failures and skipped points", ""] + [f"- {_short(n, 300)}" for n in notes] + [""]
    path.write_text("\n".join(lines))
    return path


def _command(argv: list[str]) -> str:
    if argv and str(argv[0]).endswith(("distributary", "cli.py", "__main__.py")):
        argv = ["distributary", *argv[1:]]
    return " ".join(str(a) for a in argv)


def _gib(value: Any) -> str:
    return f"{value / 2**30:.0f} GiB RAM" if value else "RAM n/a"


# ---------------------------------------------------------------------------------------------------------------
def plot(result: SweepResult, path: Path) -> Path | None:
    """Log-log wall time and per-task cost (wall/N) against N, one row per scenario with at least two sizes,
    one colour per runner: distributary solid, raw baseline dashed, Prefect dotted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scenarios = [s for s in result.scenarios()
                 if len({m.n for m in result.measurements if m.scenario == s and m.ok}) >= 2]
    if not scenarios:
        return None
    runners = list(dict.fromkeys(m.runner for m in result.measurements))
    colours = {r: f"C{i % 10}" for i, r in enumerate(runners)}
    styles = {"distributary": ("-", "o"), "raw": ("--", "x"), "prefect": (":", "s")}
    fig = Figure(figsize=(11, 3.2 * len(scenarios)), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(scenarios), 2, squeeze=False)
    for row, scenario in enumerate(scenarios):
        wall_ax, task_ax = axes[row]
        for runner in runners:
            for impl, (ls, marker) in styles.items():
                ms = sorted((m for m in result.measurements
                             if (m.scenario, m.runner, m.impl) == (scenario, runner, impl) and m.ok), key=lambda m: m.n)
                if not ms:
                    continue
                ns = [m.n for m in ms]
                label = runner if impl == "distributary" else f"{runner} ({impl})"
                kw = dict(color=colours[runner], linestyle=ls, marker=marker, markersize=4, label=label)
                wall_ax.plot(ns, [m.wall for m in ms], **kw)
                wall_ax.fill_between(ns, [m.wall_min for m in ms], [m.wall_max for m in ms], color=colours[runner],
                                     alpha=0.12, linewidth=0)
                task_ax.plot(ns, [m.per_task_us for m in ms], **kw)
        for ax, ylabel in ((wall_ax, "wall time (s)"), (task_ax, "per-task cost: wall/N (us)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("N")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        wall_ax.set_title(f"{scenario}: wall time", fontsize=10)
        task_ax.set_title(f"{scenario}: per-task cost (raw dashed, Prefect dotted)", fontsize=10)
        if row == 0:
            task_ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"distributary bench ({result.machine.get('cpus')} CPUs, {result.started})", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------------------------------------------
def write_all(result: SweepResult, out_dir: Path, n: int | None = None, task_seconds: float = 0.0,
              make_plot: bool = True) -> dict[str, Any]:
    """Write results.json, report.md and plot.png into `out_dir`; returns the paths, table, targets and advice."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # The measurements first, so nothing measured is lost if anything below fails.
    (out_dir / "results.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    targets = [] if result.config.get("user_flow") else check_targets(result.measurements)  # built-in suite only
    advice = default_advice(result, n, task_seconds)
    png = plot(result, out_dir / "plot.png") if make_plot else None
    json_path = to_json(result, out_dir / "results.json", advice, targets)
    md_path = to_markdown(result, out_dir / "report.md", advice, targets, png.name if png else None)
    return {"json": json_path, "markdown": md_path, "png": png, "table": terminal_table(result),
            "targets": targets, "advice": advice}


__all__ = ["terminal_table", "format_table", "rows", "plot", "to_json", "to_markdown", "write_all",
           "default_advice", "targets_text"]
