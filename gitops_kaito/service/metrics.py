"""Prometheus metrics of the reconciler, in one registry the daemon serves on /metrics.

Names follow Flux's (`*_reconcile_duration_seconds`, counters per action) with a `gitops_kaito_` prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gitops_kaito.model.states import ModelState


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.pass_duration = Histogram(
            "gitops_kaito_reconcile_duration_seconds", "Duration of one sync pass.", ["result"], registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.passes = Counter("gitops_kaito_passes", "Sync passes by result.", ["result"], registry=r)
        self.last_success = Gauge(
            "gitops_kaito_last_success_timestamp_seconds", "Unix time of the last successful pass.", registry=r
        )
        self.applied_revision = Gauge(
            "gitops_kaito_applied_revision_info", "The source revision last applied (value 1).", ["revision"],
            registry=r,
        )
        self.objects = Counter(
            "gitops_kaito_objects", "Objects changed, by action (created, updated, replaced, pruned).",
            ["action", "kind"], registry=r,
        )
        self.drift = Counter("gitops_kaito_drift_corrected", "Objects brought back after a hand edit.", ["kind"],
                             registry=r)
        self.drift_detected = Gauge(
            "gitops_kaito_drift_detected",
            "Objects changed in the cluster by someone else and left so (drift: report), as of the last pass.",
            ["kind"], registry=r,
        )
        self.models = Gauge("gitops_kaito_models", "Models by state.", ["state"], registry=r)
        self.git_errors = Counter("gitops_kaito_git_errors", "Git fetch/push failures.", ["operation"], registry=r)
        self.api_errors = Counter("gitops_kaito_api_errors", "Kubernetes or Azure API errors.", ["api", "code"],
                                  registry=r)
        self.webhooks = Counter("gitops_kaito_webhooks", "Webhook deliveries by source and HTTP status.",
                                ["source", "status"], registry=r)
        self.status_commits = Counter("gitops_kaito_status_commits", "Status commits pushed.", registry=r)
        self.leader = Gauge("gitops_kaito_leader", "1 while this replica holds the leader Lease.", registry=r)
        self.gpu_nodes = Gauge("gitops_kaito_gpu_nodes", "GPU nodes the models hold (those with a known price).",
                               registry=r)
        self.gpu_cost = Gauge("gitops_kaito_gpu_cost_usd_per_hour",
                              "What those GPU nodes cost per hour (catalog prices or gitops-kaito.yaml prices).",
                              registry=r)
        self.notifications = Counter(
            "gitops_kaito_notifications",
            "Model state change notifications, by sink (generic, slack, teams) and result (sent, failed, dropped).",
            ["sink", "result"], registry=r,
        )
        self.commit_status_requests = Counter(
            "gitops_kaito_commit_status_requests",
            "Answers of the commit status API by provider (github, gitlab) and HTTP code (0: no answer), retries "
            "included.", ["provider", "code"], registry=r,
        )
        self.commit_statuses = Counter(
            "gitops_kaito_commit_statuses",
            "Commit statuses by provider and result (sent, unchanged, unauthorized, forbidden, not_found, invalid, "
            "rate_limited, server_error, unreachable, dropped).", ["provider", "result"], registry=r,
        )
        self.watch_events = Counter(
            "gitops_kaito_watch_events",
            "Watch events received, by kind and type (ADDED, MODIFIED, DELETED, BOOKMARK); our own writes included.",
            ["kind", "type"], registry=r,
        )
        self.watch_relists = Counter(
            "gitops_kaito_watch_relists",
            "Full LISTs of a watched kind, by reason: start (its watch started), expired (410 Gone), dropped (the "
            "stream failed or the API server went away), periodic (the safety net), requested (a write was refused "
            "because the object changed since it was read).", ["kind", "reason"], registry=r,
        )
        # The watched view, read when /metrics is scraped: the daemon sets it once its WatchCache exists.
        self.watch_state: Callable[[], Mapping[str, tuple[bool, int]]] | None = None
        r.register(_WatchStateCollector(self))
        self._revision = ""
        self._drift_kinds: set[str] = set()

    def set_revision(self, revision: str) -> None:
        if self._revision and self._revision != revision:
            self.applied_revision.remove(self._revision)
        self._revision = revision
        self.applied_revision.labels(revision=revision).set(1)

    def set_drift_detected(self, counts: Mapping[str, int]) -> None:
        """One pass's drifted objects by kind (plan.reported_drift_counts); a kind seen before and clean now is 0."""
        for kind in set(self._drift_kinds) | set(counts):
            self.drift_detected.labels(kind=kind).set(counts.get(kind, 0))
        self._drift_kinds |= set(counts)

    def set_model_states(self, counts: Mapping[str, int]) -> None:
        for state in ModelState:
            self.models.labels(state=state).set(counts.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # adapters/watchcache.WatchCounters: the cache reports through these without knowing of Prometheus.
    def event(self, kind: str, etype: str) -> None:
        self.watch_events.labels(kind=kind, type=etype).inc()

    def relisted(self, kind: str, reason: str) -> None:
        self.watch_relists.labels(kind=kind, reason=reason).inc()


class _WatchStateCollector(Collector):
    """gitops_kaito_watch_synced and gitops_kaito_cache_objects per kind, read from the cache at each scrape (a
    count kept on every event would be one more thing to get wrong)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        synced = GaugeMetricFamily("gitops_kaito_watch_synced",
                                   "1 while the watched view of a kind is in sync (passes read it), else 0 (passes "
                                   "list for themselves until it is re-listed).", labels=["kind"])
        objects = GaugeMetricFamily("gitops_kaito_cache_objects", "Objects the watched view holds, by kind.",
                                    labels=["kind"])
        source = self._metrics.watch_state
        for kind, (in_sync, count) in sorted((source() if source is not None else {}).items()):
            synced.add_metric([kind], 1.0 if in_sync else 0.0)
            objects.add_metric([kind], float(count))
        yield synced
        yield objects
