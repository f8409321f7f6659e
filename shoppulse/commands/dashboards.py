"""Grafana boards as code: ``shoppulse dashboards`` writes ``grafana/dashboards/*.json``.

The boards are built with grafana-foundation-sdk from the configuration, so a metric
declared in ``shoppulse.yaml`` (a new topic included) gets its panels, its template
variables and its actual-vs-expected panel without anyone editing JSON. The committed JSON
is this module's output (a test compares them); regenerate with ``make dashboards``.

Every query names the datasource uid ``shoppulse-prometheus`` that
``grafana/provisioning/datasources/prometheus.yml`` provisions, and uses only metric
names a worker exposes, the recording rules of ``prometheus/rules/recording.yml`` and the
alerting contract's names (alerts, notifiers, playbooks).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import common as gcb
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, statushistory, table
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as gc
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from shoppulse.streams.config import Config, MetricSpec

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="shoppulse-prometheus")
#: Dimensions operators filter every board by (template variables, "All" = any value).
VARIABLES = ("channel", "platform", "carrier")
#: Reference thresholds of the operations plan, drawn on the Overview panels.
CTR_MIN, BOUNCE_MAX, CONVERSION_BAND = 0.03, 0.40, (0.028, 0.036)
#: Topics whose metrics go on the Funnel and Logistics boards; others on "Declared topics".
FUNNEL_TOPICS, LOGISTICS_TOPICS = ("clicks", "orders"), ("logistics",)


@dataclass
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    """One panel before it becomes an SDK builder: kind, title, queries and display."""

    kind: str  # timeseries | stat | table | heatmap | statushistory
    title: str
    queries: list[Query]
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    min: float | None = None
    band: bool = False  # queries C and D are the expected band's lower and upper edges


@dataclass
class Board:
    uid: str
    title: str
    description: str
    rows: list[tuple[str, list[Panel]]]


# -- PromQL from metric specs ---------------------------------------------------------------
def selector(metric: MetricSpec, extra: str = "") -> str:
    """Label matchers of the template variables the metric has, e.g. ``{channel=~"$channel"}``."""
    parts = [extra] if extra else []
    parts += [f'{d}=~"${d}"' for d in metric.dimensions if d in VARIABLES]
    return "{" + ", ".join(parts) + "}" if parts else ""


def _by(metric: MetricSpec) -> str:
    return f" by ({', '.join(metric.dimensions)})" if metric.dimensions else ""


def _legend(metric: MetricSpec, suffix: str = "") -> str:
    text = " / ".join(f"{{{{{d}}}}}" for d in metric.dimensions) or metric.name
    return f"{text} {suffix}".strip()


def value_query(metric: MetricSpec) -> Query:
    """The metric as an operator reads it: counts per minute, other kinds the last window."""
    name = metric.prometheus_name
    if metric.prometheus_unit == "total":
        # grows by each closed window's count: per minute over five minutes smooths the steps
        return Query(f"60 * sum{_by(metric)} (rate({name}{selector(metric)}[5m]))",
                     _legend(metric))
    # one series per worker that ever owned it: the max merges a partition's handover
    return Query(f"max{_by(metric)} ({name}{selector(metric)})", _legend(metric))


def window_value_query(metric: MetricSpec, window: float) -> Query:
    """The value of the last window, on the detector's scale (counts per window, not /min)."""
    name = metric.prometheus_name
    if metric.prometheus_unit == "total":
        return Query(f"sum{_by(metric)} (increase({name}{selector(metric)}[{window:g}s]))",
                     _legend(metric, "actual"))
    return Query(f"max{_by(metric)} ({name}{selector(metric)})", _legend(metric, "actual"))


def band_queries(metric: MetricSpec, window: float) -> list[Query]:
    """Actual, expected, lower and upper of every series of ``metric`` (refIds A-D)."""
    sel = selector(metric, f'metric="{metric.name}"')
    return [window_value_query(metric, window)] + [
        Query(f"max{_by(metric)} ({gauge}{sel})", _legend(metric, what))
        for gauge, what in (("shoppulse_expected_value", "expected"),
                            ("shoppulse_expected_lower", "lower"),
                            ("shoppulse_expected_upper", "upper"))]


def unit_of(metric: MetricSpec) -> str:
    return {"ratio": "percentunit", "seconds": "s", "total": "short"}.get(
        metric.prometheus_unit, "short")


def topic_of(metric: MetricSpec, config: Config) -> str:
    comp = metric.components()[0]
    return config.sessions.topic if comp.session else str(comp.topic)


def metric_panel(metric: MetricSpec) -> Panel:
    per_minute = metric.prometheus_unit == "total"
    title = f"{metric.name.replace('_', ' ')}{' per minute' if per_minute else ''}"
    by = f" by {', '.join(metric.dimensions)}" if metric.dimensions else ""
    return Panel("timeseries", title + by, [value_query(metric)], unit=unit_of(metric),
                 description=(metric.help or f"{metric.kind} metric {metric.prometheus_name}")
                 + (" (events per minute, over 5 minutes)" if per_minute
                    else " (value of the last closed window)"),
                 min=0 if metric.kind != "sum" else None)


def band_panel(metric: MetricSpec, config: Config) -> Panel:
    by = f" by {', '.join(metric.dimensions)}" if metric.dimensions else ""
    return Panel("timeseries", f"{metric.name.replace('_', ' ')}{by}: actual vs expected",
                 band_queries(metric, config.window_of(metric)), unit=unit_of(metric), band=True,
                 description="Solid: the value of each closed window. Dashed: the detector's "
                             "expected value and band; a value outside the band for several "
                             "windows is what the anomaly score measures.")


# -- boards -----------------------------------------------------------------------------------
def overview(config: Config) -> Board:
    has = {m.name for m in config.metrics}
    stats: list[Panel] = []
    series: list[Panel] = []

    def both(name: str, title: str, expr: str, unit: str, desc: str,
             thresholds: list[tuple[float | None, str]] | None = None) -> None:
        th = thresholds or []
        stats.append(Panel("stat", title, [Query(expr, title)], unit=unit, width=3, height=4,
                           description=desc, thresholds=th))
        series.append(Panel("timeseries", title, [Query(expr, title)], unit=unit, width=8,
                            description=desc, thresholds=th, min=0))

    if "orders_overall" in has:
        both("orders", "Orders / min", "shoppulse:orders:per_minute", "short",
             "Orders placed per minute, all channels (5-minute average of closed windows).")
    if "gmv_overall" in has:
        both("gmv", "GMV per window", "max(shoppulse_gmv_overall)", "short",
             "Value of the orders placed in the last closed window, all categories.")
    if "conversion_overall" in has:
        lo, hi = CONVERSION_BAND
        both("conversion", "Conversion", "max(shoppulse_conversion_overall_ratio)",
             "percentunit", f"Sessions with a purchase per session started. Plan band "
             f"{lo:.1%}-{hi:.1%}: red below, green inside, orange above (check for bots).",
             [(None, "red"), (lo, "green"), (hi, "orange")])
    if "bounce_overall" in has:
        both("bounce", "Landing bounce", "max(shoppulse_bounce_overall_ratio)", "percentunit",
             f"Sessions with a single interaction per session started; plan: at most "
             f"{BOUNCE_MAX:.0%}.", [(None, "green"), (BOUNCE_MAX, "red")])
    if {"clicks", "impressions"} <= has:
        both("ctr", "CTR", "shoppulse:ctr:ratio5m", "percentunit",
             f"Clicks per impression over 5 minutes, all channels; plan: at least "
             f"{CTR_MIN:.0%}.", [(None, "red"), (CTR_MIN, "green")])
    if "payment_success_overall" in has:
        both("payment", "Payment success", "max(shoppulse_payment_success_overall_ratio)",
             "percentunit", "Paid per payment attempt (paid + failed), all platforms.")
    if "on_time_delivery" in has:
        both("ontime", "On-time delivery (carrier mean)",
             "avg(shoppulse_on_time_delivery_ratio >= 0)", "percentunit",
             "Deliveries by their promised time, mean over the carriers that delivered in "
             "their last window (>= 0 drops the empty ones); the Logistics board splits it "
             "by carrier and region.")
    alerts = [
        Panel("stat", "Firing alerts", [Query("sum(shoppulse_alerts_firing)", "firing")],
              width=3, height=4, thresholds=[(None, "green"), (1, "red")],
              description="Business alerts firing now (shoppulse's rules)."),
        Panel("table", "Firing alerts by rule",
              [Query("sort_desc(sum by (rule, severity) (shoppulse_alerts_firing))",
                     instant=True)],
              width=8, description="Rules with their number of firing series; details, "
                                   "playbooks and timelines on the Alerts & playbooks board."),
    ]
    return Board("shoppulse-overview", "shoppulse / Overview",
                 "Is the shop healthy? Headline metrics of all channels against the "
                 "operations plan's thresholds, and the alerts firing now.",
                 [("Now", [*stats, alerts[0]]), ("Trend", [*series, alerts[1]])])


def by_topic_rows(config: Config, topics: Iterable[str]) -> list[tuple[str, list[Panel]]]:
    rows = []
    for topic in topics:
        panels = [metric_panel(m) for m in config.metrics if topic_of(m, config) == topic]
        if panels:
            rows.append((f"{topic} metrics", panels))
    return rows


def funnel(config: Config) -> Board | None:
    rows = by_topic_rows(config, FUNNEL_TOPICS)
    if not rows:
        return None
    return Board("shoppulse-funnel", "shoppulse / Funnel",
                 "Each stage of impression -> click -> landing -> cart -> checkout -> order -> "
                 "payment, split by channel and platform.", rows)


def logistics(config: Config) -> Board | None:
    rows = by_topic_rows(config, LOGISTICS_TOPICS)
    if not rows:
        return None
    return Board("shoppulse-logistics", "shoppulse / Logistics",
                 "Dispatch latency, on-time delivery, delay and exception rates by carrier, "
                 "warehouse and region.", rows)


def declared(config: Config) -> Board | None:
    topics = [t for t in config.topics if t not in (*FUNNEL_TOPICS, *LOGISTICS_TOPICS)]
    rows = by_topic_rows(config, topics)
    if not rows:
        return None
    return Board("shoppulse-topics", "shoppulse / Declared topics",
                 "Metrics of the topics declared in the configuration beyond the built-in "
                 "clicks, orders and logistics.", rows)


def anomalies(config: Config) -> Board:
    dims = sorted({d for m in config.metrics for d in m.dimensions})
    keep = ", ".join(["metric", *dims])
    top = [
        Panel("heatmap", "Anomaly scores of all series",
              [Query("shoppulse_anomaly_score")], width=12,
              description="How many series sit at each score (0 = as expected, 1 = "
                          "certainly anomalous), over time. A bright band near 1 is an incident."),
        Panel("statushistory", "Highest score per metric",
              [Query("max by (metric) (shoppulse_anomaly_score)", "{{metric}}")], width=12,
              thresholds=[(None, "green"), (0.5, "yellow"), (0.9, "red")], min=0,
              description="Per metric, the score of its most anomalous series."),
        Panel("table", "Top contributing series now",
              [Query(f"topk(10, max by ({keep}) (shoppulse_anomaly_score))", instant=True)],
              width=12, description="The ten series with the highest score: which channel, "
                                    "platform, carrier ... drives the deviation."),
        Panel("timeseries", "Anomalous windows per metric (15 min)",
              [Query("sum by (metric) (increase(shoppulse_anomalous_points_total[15m]))",
                     "{{metric}}")], width=12, min=0,
              description="Windows the detectors judged anomalous."),
    ]
    bands = [band_panel(m, config) for m in config.metrics]
    return Board("shoppulse-anomalies", "shoppulse / Anomalies",
                 "What the detectors see: each series against its expected band, scores of all "
                 "series, and the series that drive a deviation.",
                 [("Scores", top), ("Actual vs expected", bands)])


def _quantiles(histogram: str, title: str) -> Panel:
    return Panel("timeseries", title, [
        # cumulative buckets, not rate(): runs are rare, and one run must show
        Query(f"histogram_quantile({q}, sum by (le, playbook) ({histogram}_bucket))",
              f"{{{{playbook}}}} p{int(q * 100)}") for q in (0.5, 0.9)],
        unit="s", width=8, min=0,
        description=f"{title} per playbook (p50, p90 of every run since the worker started).")


def alerts(config: Config) -> Board:
    firing = [
        Panel("timeseries", "Firing alerts by rule and severity",
              [Query("sum by (rule, severity) (shoppulse_alerts_firing)",
                     "{{rule}} ({{severity}})")], min=0,
              description="Series firing per rule."),
        Panel("timeseries", "Alert transitions (15 min)",
              [Query("sum by (rule, state) (increase(shoppulse_alert_transitions_total[15m]))",
                     "{{rule}} {{state}}")], min=0,
              description="Lifecycle transitions: pending, firing, resolved."),
        Panel("timeseries", "Notifications by receiver and result",
              [Query("60 * sum by (receiver, result) (rate(shoppulse_notifications_total[5m]))",
                     "{{receiver}} {{result}}")], width=8, min=0,
              description="Per minute: sent, failed (given up), deduplicated, dropped."),
        Panel("timeseries", "Delivery failures (15 min)",
              [Query("sum by (receiver) "
                     "(increase(shoppulse_notification_failures_total[15m]))",
                     "{{receiver}}")], width=8, min=0,
              description="Failed delivery attempts (retried); see ShoppulseNotifierFailing."),
        Panel("timeseries", "Notification queue",
              [Query("sum by (receiver) (shoppulse_notification_queue)", "{{receiver}}")],
              width=8, min=0, description="Deliveries waiting per receiver."),
    ]
    playbooks = [
        Panel("timeseries", "Playbook runs by stage",
              [Query("sum by (playbook, stage) (shoppulse_playbook_runs_active)",
                     "{{playbook}} {{stage}}")], min=0,
              description="Runs in progress: identify, decide (waiting for approval), act, "
                          "evaluate."),
        Panel("timeseries", "Finished runs by outcome (1 h)",
              [Query("sum by (playbook, outcome) (increase(shoppulse_playbook_runs_total[1h]))",
                     "{{playbook}} {{outcome}}")], min=0,
              description="Recovered, escalated, ..."),
        _quantiles("shoppulse_playbook_time_to_detect_seconds", "Time to detect"),
        _quantiles("shoppulse_playbook_time_to_acknowledge_seconds", "Time to acknowledge"),
        _quantiles("shoppulse_playbook_time_to_recover_seconds", "Time to recover"),
    ]
    return Board("shoppulse-alerts", "shoppulse / Alerts & playbooks",
                 "Alerts firing, their notifications, and the playbooks handling them.",
                 [("Alerts", firing), ("Playbooks", playbooks)])


def pipeline(config: Config) -> Board:
    flow = [
        Panel("timeseries", "Events per second by topic",
              [Query("shoppulse:events:rate1m", "{{topic}}")], min=0,
              description="Valid events consumed, all workers."),
        Panel("timeseries", "Invalid events by topic and reason",
              [Query("shoppulse:events_invalid:rate5m", "{{topic}} {{reason}}")], unit="short",
              min=0, description="Events per second sent to the dead-letter topic, with why."),
        Panel("timeseries", "Late events by topic",
              [Query("sum by (topic) (rate(shoppulse_late_events_total[5m]))", "{{topic}}")],
              min=0, description="Events per second later than window end + grace: dropped."),
        Panel("timeseries", "Duplicate events by topic",
              [Query("sum by (topic) (rate(shoppulse_duplicate_events_total[5m]))",
                     "{{topic}}")], min=0, description="Repeated events per second, dropped."),
        Panel("timeseries", "Consumer lag by topic",
              [Query("shoppulse:consumer_lag_messages:sum", "{{topic}}")], min=0,
              description="Input messages not yet consumed; growing = workers fall behind."),
        Panel("timeseries", "Window-close delay",
              [Query("histogram_quantile(0.5, sum by (le) "
                     "(rate(shoppulse_window_close_delay_seconds_bucket[5m])))", "p50"),
               Query("shoppulse:window_close_delay_seconds:p95", "p95")], unit="s", min=0,
              description="Wall time from window end + grace to the window's points: how "
                          "late the boards and alerts are."),
        Panel("timeseries", "Metric points per second",
              [Query("shoppulse:metric_points:rate5m", "points")], min=0,
              description="Closed-window values emitted. Zero while events flow = stuck."),
        Panel("timeseries", "Partials replayed",
              [Query("sum(rate(shoppulse_partials_replayed_total[5m]))", "replayed")], min=0,
              description="Partials dropped as already applied (after a crash or rebalance)."),
    ]
    workers = [
        Panel("stat", "Workers up", [Query("shoppulse:workers_up:count", "workers")], width=6,
              thresholds=[(None, "red"), (1, "green")],
              description="Workers Prometheus scrapes successfully."),
        Panel("statushistory", "Worker scrapes", [Query('up{job="shoppulse"}', "{{instance}}")],
              width=6, thresholds=[(None, "red"), (1, "green")],
              description="1 = the worker answered its scrape."),
        Panel("statushistory", "Broker reachable",
              [Query("min by (instance) (shoppulse_broker_up)", "{{instance}}")], width=6,
              thresholds=[(None, "red"), (1, "green")],
              description="Each worker's view of Kafka (1 = reachable)."),
        Panel("timeseries", "Last fetch age", [
            Query("max by (instance) (shoppulse_broker_last_fetch_age_seconds)",
                  "{{instance}}")], unit="s", width=6, min=0,
              description="Seconds since each worker last fetched from Kafka."),
    ]
    return Board("shoppulse-pipeline", "shoppulse / Pipeline health",
                 "Is shoppulse itself keeping up? Input rates, rejected, late and duplicate "
                 "events, lag, window-close delay, workers and broker.",
                 [("Flow", flow), ("Workers and broker", workers)])


BOARDS: dict[str, Callable[[Config], Board | None]] = {
    "overview": overview, "funnel": funnel, "logistics": logistics, "anomalies": anomalies,
    "alerts": alerts, "pipeline": pipeline, "topics": declared,
}


# -- SDK builders ---------------------------------------------------------------------------
def _target(q: Query, ref: str) -> prometheus.Dataquery:
    t = prometheus.Dataquery().expr(q.expr).ref_id(ref).datasource(DATASOURCE)
    if q.legend:
        t = t.legend_format(q.legend)
    if q.instant:
        t = t.instant().format(PromQueryFormat.TABLE)
    return t


def _thresholds(steps: list[tuple[float | None, str]]) -> gd.ThresholdsConfig:
    return gd.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in steps])


def build_panel(p: Panel, panel_id: int) -> object:
    builders = {"timeseries": ts.Panel, "stat": stat.Panel, "table": table.Panel,
                "heatmap": heatmap.Panel, "statushistory": statushistory.Panel}
    b = builders[p.kind]().id(panel_id).title(p.title).datasource(DATASOURCE)
    b = b.description(p.description).height(p.height).span(p.width)
    if p.kind != "heatmap":
        b = b.unit(p.unit)
    for i, q in enumerate(p.queries):
        b = b.with_target(_target(q, chr(ord("A") + i)))
    if p.min is not None and p.kind in ("timeseries", "stat"):
        b = b.min(p.min)
    if p.thresholds:
        b = b.thresholds(_thresholds(p.thresholds))
        if p.kind == "timeseries":  # the plan's thresholds drawn on the graph
            b = b.thresholds_style(gcb.GraphThresholdsStyleConfig().mode(
                gc.GraphThresholdsStyleMode.LINE_AND_AREA))
        if p.kind == "stat":
            b = b.color_mode(gc.BigValueColorMode.BACKGROUND).graph_mode(
                gc.BigValueGraphMode.AREA)
    if p.kind == "timeseries":
        b = b.line_width(1).fill_opacity(0 if p.band else 10)
        if p.band:  # expected dashed, the band's edges dotted
            dashed = [dm.DynamicConfigValue(id_val="custom.lineStyle",
                                            value={"fill": "dash", "dash": [10, 10]})]
            dotted = [dm.DynamicConfigValue(id_val="custom.lineStyle",
                                            value={"fill": "dot", "dash": [0, 10]})]
            b = b.override_by_query("B", dashed).override_by_query("C", dotted) \
                .override_by_query("D", dotted)
    if p.kind == "heatmap":
        b = b.calculate(True).hide_legend()  # buckets of the scores, from the plain series
    return b


def build(board: Board) -> gd.Dashboard:
    d = (gd.Dashboard(board.title).uid(board.uid).description(board.description)
         .tags(["shoppulse"]).refresh("30s").time("now-3h", "now").timezone("browser")
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).readonly()
         .link(gd.DashboardLink("shoppulse").type(dm.DashboardLinkType.DASHBOARDS)
               .tags(["shoppulse"]).as_dropdown(False).include_vars(True).keep_time(True)))
    panel_id = 0
    used: list[Panel] = [p for _, panels in board.rows for p in panels]
    exprs = " ".join(q.expr for p in used for q in p.queries)
    for var in VARIABLES:
        if f"${var}" in exprs:
            d = d.with_variable(_variable(var, board))
    for title, panels in board.rows:
        panel_id += 1
        d = d.with_row(gd.Row(title).id(panel_id))
        for p in panels:
            panel_id += 1
            d = d.with_panel(build_panel(p, panel_id))
    return d


def _variable(name: str, board: Board) -> gd.QueryVariable:
    """``label_values`` of the first metric on the board that carries the label."""
    source = next(q.expr for _, panels in board.rows for p in panels for q in p.queries
                  if f"${name}" in q.expr)
    metric = re.findall(r"shoppulse_[a-z0-9_]+", source)[0]
    return (gd.QueryVariable(name).label(name).datasource(DATASOURCE)
            .query(f"label_values({metric}, {name})")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .include_all(True).multi(True).all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all")))


def render(config: Config) -> dict[str, str]:
    """File name -> JSON text of every board for ``config``."""
    out = {}
    for stem, make in BOARDS.items():
        board = make(config)
        if board is not None:
            out[f"{stem}.json"] = JSONEncoder(sort_keys=True, indent=2).encode(
                build(board).build()) + "\n"
    return out
