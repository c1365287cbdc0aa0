"""`edgeops dashboard`: a read-only fleet view in the browser, on loopback.

One page lists every cohort (what runs where, the rollout step, its gates); one page per cohort
adds the rollout history and the monitor's windows over time (estimated accuracy and drift share
as plots). It reads through the same code the CLI uses (`registry.rollouts.RolloutManager` for
cohorts, rollouts and history; the monitor's MLflow runs for windows), writes nothing, and
renders plain HTML with inline SVG: no script, no CDN, so it works offline and behind a proxy.

The standard library's HTTP server is enough for a read-only page a few people open; behind a
company proxy it needs nothing else.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any
from urllib.parse import unquote, urlparse

import typer

from edgeops.cli.common import console
from edgeops.cli.common import settings as cli_settings
from edgeops.errors import EdgeOpsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Series:
    """One line on a plot: (time, value) points."""

    name: str
    points: Sequence[tuple[datetime, float]]


@dataclass
class FleetView:
    """What the pages show, read once per request through `load`."""

    cohorts: list[dict[str, Any]]
    rollouts: dict[str, dict[str, Any]]
    history: Callable[[str], list[dict[str, Any]]]
    windows: Callable[[str], list[dict[str, Any]]] = field(default=lambda cohort: [])


# --- data: the CLI's own functions --------------------------------------------------------
def load_view(settings: Any) -> FleetView:
    """Cohorts, rollout summaries, history and monitor windows, as `edgeops release status`,
    `history` and `cohorts list` read them (no key is needed, none is created)."""
    from registry.channel_access import channel_repository
    from registry.rollouts import RolloutManager

    mgr = RolloutManager(channel_repository(settings), settings.devices(), None, keys_dir=settings.keys_dir)
    cohorts = mgr.cohorts()
    rollouts = {}
    for c in cohorts:
        state = mgr.state(c["cohort"])
        rollouts[c["cohort"]] = {**state.summary(), "gates": _gates(mgr, state)}
    return FleetView(cohorts, rollouts, mgr.history, lambda cohort: monitor_windows(settings, cohort))


def _gates(mgr: Any, state: Any) -> dict[str, Any] | None:
    """`edgeops release status`'s gate evidence for a running or paused rollout (None otherwise)."""
    if state.status not in ("running", "paused"):
        return None
    from flows.rollout import gate_report

    report = gate_report(mgr, state)
    return report.to_dict() if report else None


def monitor_windows(settings: Any, cohort: str, limit: int = 500) -> list[dict[str, Any]]:
    """The monitor's judged windows for a cohort, oldest first, from its MLflow runs."""
    client = settings.mlflow_client()
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], f"tags.`edgeops.stage` = 'drift' and tags.cohort = '{cohort}'",
                              max_results=limit, order_by=["attributes.start_time DESC"])
    out = []
    for run in reversed(runs):
        tags, metrics = run.data.tags, run.data.metrics
        out.append({"window_start": tags.get("window_start", ""), "model_version": tags.get("model_version", ""),
                    "harmful": tags.get("harmful", ""), "drifted": tags.get("drifted", ""),
                    "estimated_accuracy": metrics.get("estimated_accuracy"),
                    "drift_share": metrics.get("data_drift_share"),
                    "run_id": run.info.run_id})
    return out


# --- rendering -------------------------------------------------------------------------------
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}
th,td{padding:6px 10px;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600} a{color:#1f5fbf;text-decoration:none}
.muted{color:#667085} .ok{color:#147a3d;font-weight:600} .warn{color:#a15c00;font-weight:600}
.bad{color:#b42318;font-weight:600} .mono{font-family:ui-monospace,monospace;font-size:12px}
svg{background:#fff;box-shadow:0 1px 2px #0002;margin-right:16px}
"""


def _e(value: Any) -> str:
    return "-" if value is None or value == "" else html.escape(str(value))


def _ref(ref: dict[str, Any] | None) -> str:
    if not ref:
        return "-"
    model = ref.get("registered_model") or ref.get("model_name") or ""
    return (f"{_e(model)} v{_e(ref.get('model_version'))} <span class=muted>{_e(ref.get('target'))} "
            f"<span class=mono>{_e(str(ref.get('bundle_id', ''))[:10])}</span></span>")


def _status_class(status: Any) -> str:
    return {"running": "warn", "completed": "ok", "rolled_back": "bad", "paused": "warn"}.get(str(status), "muted")


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def overview_html(view: FleetView) -> str:
    rows = []
    for c in view.cohorts:
        name = c["cohort"]
        r = view.rollouts.get(name, {})
        status = r.get("status") or "-"
        rows.append(
            f"<tr><td><a href='/cohort/{html.escape(name)}'>{_e(name)}</a></td><td>{_e(c.get('profile'))}</td>"
            f"<td>{_ref(c.get('stable'))}</td><td>{_ref(c.get('candidate'))}</td>"
            f"<td>{_e(c.get('percentage'))}</td><td class={_status_class(status)}>{_e(status)}</td>"
            f"<td>{_e(r.get('step'))}</td><td>{_e(r.get('last_change'))}</td></tr>")
    table = ("<table><tr><th>cohort</th><th>profile</th><th>stable</th><th>candidate</th><th>% on candidate</th>"
             "<th>rollout</th><th>step</th><th>last change</th></tr>" + "".join(rows) + "</table>")
    return page("edgeops fleet", f"<h1>edgeops fleet</h1><p class=muted>{len(view.cohorts)} cohorts; "
                f"read-only, as of {datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}</p>{table}")


def cohort_html(view: FleetView, name: str) -> str:
    cohort = next((c for c in view.cohorts if c["cohort"] == name), None)
    if cohort is None:
        raise KeyError(name)
    r = view.rollouts.get(name, {})
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in [
        ("profile", _e(cohort.get("profile"))), ("stable", _ref(cohort.get("stable"))),
        ("candidate", _ref(cohort.get("candidate"))), ("% on candidate", _e(cohort.get("percentage"))),
        ("rollout", f"<span class={_status_class(r.get('status'))}>{_e(r.get('status'))}</span>"),
        ("step", _e(r.get("step")))])
    gates = _gates_html(r.get("gates"))
    windows = view.windows(name)
    accuracy = _series(windows, "estimated_accuracy")
    low = min((v for _, v in accuracy.points), default=0.0)
    plots = (line_plot("estimated accuracy", [accuracy], (max(0.0, round(low - 0.05, 1)), 1.0))
             + line_plot("share of features drifted", [_series(windows, "drift_share")], (0.0, 1.0)))
    hist_rows = "".join(
        f"<tr><td>{_e(h.get('at'))}</td><td>{_e(h.get('actor'))}</td><td>{_e(h.get('action'))}</td>"
        f"<td>{_e(h.get('from_status'))} &rarr; {_e(h.get('to_status'))}</td><td>{_e(h.get('percentage'))}</td>"
        f"<td>{_e(h.get('model'))} v{_e(h.get('version'))}</td><td>{_e(h.get('reason'))}</td></tr>"
        for h in view.history(name))
    history = ("<table><tr><th>at</th><th>actor</th><th>action</th><th>status</th><th>%</th><th>model</th>"
               "<th>reason</th></tr>" + (hist_rows or "<tr><td colspan=7 class=muted>no transitions yet</td></tr>")
               + "</table>")
    return page(f"{name} - edgeops", f"<p><a href='/'>&larr; all cohorts</a></p><h1>{_e(name)}</h1>"
                f"<table>{facts}</table>{gates}<h2>Monitor windows ({len(windows)})</h2>{plots}"
                f"<h2>History</h2>{history}")


def _gates_html(gates: dict[str, Any] | None) -> str:
    """The current step's gates, as `edgeops release status` prints them."""
    if not gates:
        return ""
    rows = "".join(
        f"<tr><td>{_e(g['gate'])}</td><td>{_e(g['value'])}</td><td>{_e(g['limit'])}</td>"
        f"<td class={'bad' if g['state'] in ('FAIL', 'fail', 'unmet') else 'muted'}>{_e(g['state'])}</td></tr>"
        for g in gates.get("gates", []))
    d = gates.get("decision", {})
    return (f"<h2>Gates of the current step</h2><table><tr><th>gate</th><th>value</th><th>limit / interval</th>"
            f"<th>state</th></tr>{rows}</table><p>controller now: <b>{_e(d.get('action'))}</b> &mdash; "
            f"{_e('; '.join(d.get('reasons', [])))}</p>")


def _series(windows: list[dict[str, Any]], key: str) -> Series:
    points = []
    for w in windows:
        value, start = w.get(key), w.get("window_start")
        if value is None or not start:
            continue
        try:
            points.append((datetime.fromisoformat(str(start)), float(value)))
        except ValueError:
            continue
    return Series(key, points)


def line_plot(title: str, series: Sequence[Series], y_range: tuple[float, float], width: int = 460,
              height: int = 200) -> str:
    """An inline SVG line plot (no script): time on x, `y_range` on y."""
    points = [p for s in series for p in s.points]
    head = f"<svg width={width} height={height} role=img aria-label='{_e(title)}'>"
    caption = f"<text x=10 y=18 font-size=13 font-weight=600>{_e(title)}</text>"
    if not points:
        return f"{head}{caption}<text x=10 y=50 fill='#667085'>no windows judged yet</text></svg>"
    t0 = min(t for t, _ in points).timestamp()
    t1 = max(t for t, _ in points).timestamp()
    lo, hi = y_range
    left, right, top, bottom = 44, width - 12, 28, height - 24

    def xy(t: datetime, v: float) -> tuple[float, float]:
        x = left + (right - left) * ((t.timestamp() - t0) / (t1 - t0) if t1 > t0 else 0.5)
        y = bottom - (bottom - top) * ((min(max(v, lo), hi) - lo) / (hi - lo))
        return x, y

    axis = (f"<line x1={left} y1={bottom} x2={right} y2={bottom} stroke='#98a2b3'/>"
            f"<line x1={left} y1={top} x2={left} y2={bottom} stroke='#98a2b3'/>"
            f"<text x=4 y={top + 4} font-size=11>{hi:g}</text><text x=4 y={bottom} font-size=11>{lo:g}</text>"
            f"<text x={left} y={height - 6} font-size=11>{min(t for t, _ in points):%m-%d %H:%M}</text>"
            f"<text x={right - 70} y={height - 6} font-size=11>{max(t for t, _ in points):%m-%d %H:%M}</text>")
    lines = []
    for s in series:
        coords = [xy(t, v) for t, v in sorted(s.points)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        lines.append(f"<polyline fill=none stroke='#1f5fbf' stroke-width=2 points='{path}'/>"
                     + "".join(f"<circle cx={x:.1f} cy={y:.1f} r=2.5 fill='#1f5fbf'/>" for x, y in coords))
    return f"{head}{caption}{axis}{''.join(lines)}</svg>"


# --- serving ---------------------------------------------------------------------------------
def make_handler(load: Callable[[], FleetView]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urlparse(self.path).path
            try:
                view = load()
                if path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, overview_html(view))
                elif path.startswith("/cohort/"):
                    self._send(HTTPStatus.OK, cohort_html(view, unquote(path.removeprefix("/cohort/"))))
                elif path == "/health":
                    self._send(HTTPStatus.OK, "ok", "text/plain")
                else:
                    self._send(HTTPStatus.NOT_FOUND, page("not found", "<h1>not found</h1><p><a href='/'>home</a>"))
            except KeyError as exc:
                self._send(HTTPStatus.NOT_FOUND, page("unknown cohort", f"<h1>unknown cohort {_e(exc.args[0])}</h1>"))
            except EdgeOpsError as exc:  # a store or registry problem: say it on the page
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, page("unavailable", f"<h1>unavailable</h1><p>{_e(exc)}</p>"))

        def _send(self, status: HTTPStatus, body: str, ctype: str = "text/html; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.info("dashboard: " + fmt, *args)

    return Handler


def serve(load: Callable[[], FleetView], port: int = 8765, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving in a background thread; the caller calls `shutdown()`."""
    server = ThreadingHTTPServer((host, port), make_handler(load))
    threading.Thread(target=server.serve_forever, name="edgeops-dashboard", daemon=True).start()
    return server


def register_dashboard_command(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)


def dashboard(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """A read-only fleet view in the browser: every cohort, its rollout and monitor windows."""
    import time

    settings = cli_settings()
    load_view(settings)  # fail now, with one line, if the channel or devices.yaml cannot be read
    try:
        server = serve(lambda: load_view(settings), port)
    except OSError as exc:
        raise EdgeOpsError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", where="edgeops dashboard") from exc
    console.print(f"fleet view on http://127.0.0.1:{port}/ (read-only); Ctrl-C stops it", highlight=False)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.shutdown()
