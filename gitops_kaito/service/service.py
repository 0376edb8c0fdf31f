"""The reconciler as a service: Daemon + HTTP listener + Lease leader election + the git pass, feeding the metrics.

`gitops-kaito run` and `gitops-kaito demo` both build one with build_service(); tests drive it in-process.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from gitops_kaito.adapters.gitsource import GitAuth, GitSourceError
from gitops_kaito.adapters.kube import Kube, KubeError
from gitops_kaito.adapters.watchcache import WatchCache
from gitops_kaito.adapters.writeback import WritebackError
from gitops_kaito.core.plan import Action, reported_drift_counts
from gitops_kaito.core.status import StatusMemo, gpu_cost
from gitops_kaito.model.states import Outcome
from gitops_kaito.provision.pools import PoolRunner
from gitops_kaito.reconcile.apply import ApplyOptions
from gitops_kaito.reconcile.assess import Prober
from gitops_kaito.reconcile.desiredcache import DesiredCache
from gitops_kaito.reconcile.gitsync import (
    GitPassResult,
    GitSyncSettings,
    git_source,
    read_config,
    run_git_pass,
)
from gitops_kaito.reconcile.sync import PassMemo, SyncError
from gitops_kaito.repo.config import DaemonConfig, RepoConfig
from gitops_kaito.service import heap
from gitops_kaito.service.commitstatus import CommitStatusReporter, build_reporter
from gitops_kaito.service.daemon import Daemon, DaemonSettings, PassContext
from gitops_kaito.service.leader import LeaderElector, LeaseSettings
from gitops_kaito.service.logs import set_format
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.notify import Notifier, Request, Sender, Sink
from gitops_kaito.service.reactor import Reactor, cluster_only
from gitops_kaito.service.settings import RunSettings, SettingsError
from gitops_kaito.service.webserver import Listener, ListenerHooks

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("~/.cache/gitops-kaito/git")
_ACTION_NAMES = {Action.CREATE: "created", Action.UPDATE: "updated", Action.REPLACE: "replaced",
                 Action.DELETE: "pruned"}
# How long start-up waits for the repository's gitops-kaito.yaml before the listener binds (probes must answer).
STARTUP_FETCH_TIMEOUT_S = 10.0
# The repository's daemon settings that are bound when the service starts: a later change waits for a restart.
_AT_START = ("listen", "lease_name")


@dataclass(frozen=True)
class PassReport:
    """What the daemon logs and the readiness probe reads; `result` is the full git pass when there was one."""

    ok: bool
    summary: str
    result: GitPassResult | None = field(default=None, compare=False, repr=False)


def git_settings(settings: RunSettings) -> GitSyncSettings:
    auth = GitAuth(token=settings.git_token or None, username=settings.git_username or "x-access-token",
                   ssh_key=Path(settings.ssh_key_file) if settings.ssh_key_file else None,
                   known_hosts=Path(settings.known_hosts_file) if settings.known_hosts_file else None)
    cache = Path(settings.cache_dir) if settings.cache_dir else DEFAULT_CACHE.expanduser()
    return GitSyncSettings(url=settings.git_url, cache_dir=cache, branch=settings.branch,
                           status_branch=settings.status_branch or None, auth=auth, scope=settings.scope())


def record_pass(metrics: Metrics, done: GitPassResult) -> None:
    """Feed one pass's outcome into the Prometheus metrics."""
    result = done.sync
    failed = {o.model_id for o in result.outcomes if o.state == Outcome.FAILED}
    if not result.dry_run:
        for change in result.plan.pending:
            name = _ACTION_NAMES.get(change.action)
            if name is None or change.model_id in failed:
                continue
            metrics.objects.labels(action=name, kind=change.ref.kind).inc()
            if change.drift and change.action == Action.UPDATE:
                metrics.drift.labels(kind=change.ref.kind).inc()
    metrics.set_model_states(Counter(r.state for r in done.reports))
    metrics.set_drift_detected(reported_drift_counts(result.plan))
    cost = gpu_cost(done.reports)
    metrics.gpu_nodes.set(cost.nodes if cost else 0)
    metrics.gpu_cost.set(cost.usd_per_hour if cost else 0.0)
    metrics.set_revision(done.revision)
    if done.writeback is not None and done.writeback.committed:
        metrics.status_commits.inc()


def build_notifier(settings: RunSettings, metrics: Metrics, sender: Sender | None = None) -> Notifier | None:
    """The notifier of --notify-url (None without one); every request's outcome counted per sink and result."""
    settings.check_notify()
    if not settings.notify_url:
        return None

    def count(request: Request, result: str) -> None:
        metrics.notifications.labels(sink=request.sink.name, result=result).inc(request.events)

    sink = Sink(settings.notify_url.strip(), settings.notify_format, settings.notify_secret())
    return Notifier([sink], sender or Sender(count), cluster=settings.notify_cluster or settings.context)


def startup_settings(settings: RunSettings, git: GitSyncSettings) -> RunSettings:
    """The settings to start with: the repository's `daemon:` under flags and environment.

    The listener must answer its probes soon, so the fetch is bounded (STARTUP_FETCH_TIMEOUT_S); past that, or
    with the remote down, the clone cached by an earlier run is read; without one, flags, environment and
    defaults apply and the first pass reports any difference.
    """
    if not settings.defaulted:
        return settings
    source = git_source(git, timeout_s=STARTUP_FETCH_TIMEOUT_S)
    try:
        root = source.fetch().path
    except GitSourceError as err:
        log.warning("cannot fetch gitops-kaito.yaml before starting (%s); reading the cached clone", err)
        root = source.path
    config = read_config(root) if (root / ".git").exists() else RepoConfig()
    if config is None:
        log.warning("gitops-kaito.yaml is broken, so flags, environment and defaults apply; the pass says why")
        return settings
    try:
        out = settings.with_repo(config.daemon, config.instance)
    except SettingsError as err:
        log.warning("%s; flags, environment and defaults apply", err)
        return settings
    for name in (f.name for f in dataclasses.fields(DaemonConfig)):
        if getattr(out, name) != getattr(settings, name):
            log.info("%s %s (from gitops-kaito.yaml)", name, getattr(out, name))
    return out


class GitPass:
    """The daemon's RunPass: one git pass, errors counted and turned into a failed report (never raised)."""

    def __init__(self, settings: GitSyncSettings, kube: Kube, metrics: Metrics, allow_mass_prune: bool = False,
                 pools: PoolRunner | None = None, desired_cache: DesiredCache | None = None,
                 on_config: Callable[[RepoConfig], None] | None = None,
                 notifier: Notifier | None = None, commit_status: CommitStatusReporter | None = None) -> None:
        self.settings = settings
        self.source = git_source(settings)  # one clone handle for the life of the daemon
        self.on_config = on_config  # told the gitops-kaito.yaml of every pass that could read it
        self.kube = kube
        self.metrics = metrics
        self.allow_mass_prune = allow_mass_prune
        # One runner for the life of the daemon: AKS operations started in one pass are harvested by the next.
        self.pools = pools or PoolRunner()
        # The last pass's rendered desired state: a pass on the same desired commit skips load and render.
        self.desired_cache = desired_cache or DesiredCache()
        self.notifier = notifier  # told every completed pass; it only enqueues, the sending is on its own thread
        self.commit_status = commit_status  # likewise
        # The watch-driven loop (Service.build sets these): the watched view of the cluster, the last settled pass,
        # the endpoint prober, parallel writes, and how often passes the cluster started may commit status.
        self.watch: WatchCache | None = None
        self.memo = PassMemo()
        self.status_memo = StatusMemo()
        self.prober = Prober()
        self.options = ApplyOptions()
        self.status_commit_interval_s = 10.0
        self.later: Callable[[str, float], None] | None = None  # the daemon's trigger, with a delay
        self._last_commit: float | None = None
        self._settled_misses = 0  # desired_cache.misses when the heap was last settled

    def __call__(self, ctx: PassContext) -> PassReport:
        if not ctx.should_continue():
            return PassReport(True, "skipped: not the leader or stopping")
        generation = self.notifier.generation if self.notifier is not None else None
        status_generation = self.commit_status.generation if self.commit_status is not None else None
        # A pass the cluster started (KAITO's status moving, a hand edit corrected) commits status at most every
        # status_commit_interval_s: a burst of changes gives one commit, and the held one comes with a later pass.
        now = time.monotonic()
        hold = (cluster_only(ctx.reason) and self._last_commit is not None
                and now - self._last_commit < self.status_commit_interval_s)
        try:
            done = run_git_pass(self.settings, self.kube, allow_mass_prune=self.allow_mass_prune, pools=self.pools,
                                should_continue=ctx.should_continue, cache=self.desired_cache, source=self.source,
                                live=self.watch, memo=self.memo, prober=self.prober, write_back=not hold,
                                options=self.options, status_memo=self.status_memo)
        except WritebackError as err:
            self.metrics.git_errors.labels(operation="push").inc()
            return PassReport(False, f"status write-back failed: {err}")
        except GitSourceError as err:
            self.metrics.git_errors.labels(operation="fetch").inc()
            return PassReport(False, f"git: {err}")
        except KubeError as err:
            self.metrics.api_errors.labels(api="kubernetes", code=str(err.status)).inc()
            return PassReport(False, f"kubernetes: {err}")
        except SyncError as err:
            self.metrics.api_errors.labels(api="kubernetes", code="0").inc()
            return PassReport(False, str(err))
        if self.desired_cache.misses != self._settled_misses:  # a new desired state now lives on: settle the heap
            self._settled_misses = self.desired_cache.misses
            heap.settle()
        if done.config is not None and self.on_config is not None:
            try:
                self.on_config(done.config)
            except Exception:  # the pass has applied: following the settings must not turn it into a crash
                log.exception("could not follow gitops-kaito.yaml's daemon: settings; keeping the current ones")
        if hold and self.later is not None and self._last_commit is not None:
            self.later("status held back", self.status_commit_interval_s - (now - self._last_commit))
        if done.writeback is not None and done.writeback.committed:
            self._last_commit = time.monotonic()
        for _ in range(done.sync.failed):
            self.metrics.api_errors.labels(api="kubernetes", code="apply").inc()
        record_pass(self.metrics, done)
        instance = self.settings.scope.instance or (done.config.instance if done.config is not None else "default")
        if self.notifier is not None:
            try:
                self.notifier.observe(done, instance, generation=generation)
            except Exception:  # notifications must never fail a pass
                log.exception("notifications: this pass's events were not sent")
        # A held pass committed no status: its commit status would link to a STATUS.md that does not show it yet. The
        # pass that commits the held status reports it.
        if self.commit_status is not None and not hold:
            try:
                self.commit_status.observe(done, instance, generation=status_generation)
            except Exception:  # nor must commit statuses
                log.exception("commit status: this pass's status was not sent")
        summary = done.sync.summary()
        if done.writeback is not None and done.writeback.committed:
            summary += f"; status {str(done.writeback.sha)[:12]} -> {done.writeback.branch}"
        return PassReport(done.sync.ok, summary, done)


class Service:
    """Start/stop everything `gitops-kaito run` runs; `url` is where the listener answers.

    The constructor only keeps the parts it is given; `Service.build` does the I/O that makes them (connect to the
    cluster, read the repository's `daemon:` settings, bind the listener). Settings no flag or environment variable
    set come from the followed repository's `daemon:` (RunSettings.with_repo): read once before the listener binds,
    then again after every pass (interval, jitter and log format follow it live).
    """

    def __init__(self, settings: RunSettings, *, base_settings: RunSettings, metrics: Metrics,
                 notifier: Notifier | None, kube: Kube, git: GitPass, daemon: Daemon,
                 elector: LeaderElector | None, listener: Listener) -> None:
        self.settings = settings  # what runs now: base_settings under the repository's daemon: values
        self.base_settings = base_settings  # flags, environment, defaults: what the repository's values go over
        self.metrics = metrics
        self.notifier = notifier
        self.kube = kube
        self.git = git
        self.daemon = daemon
        self.elector = elector
        self.listener = listener
        self._started = False
        self._restart_noted: set[tuple[str, Any]] = set()
        self.reactor: Reactor | None = None

    @classmethod
    def build(cls, settings: RunSettings, *, daemon_settings: DaemonSettings | None = None,
              lease: LeaseSettings | None = None, kube: Kube | None = None,
              pools: PoolRunner | None = None) -> Service:
        """Connect, read the repository's start-up settings, elect, bind: everything `run` needs, not yet started."""
        base = settings
        metrics = Metrics()
        notifier = build_notifier(settings, metrics)  # checked before anything connects
        commit_status = build_reporter(settings, metrics)
        given = kube
        kube = kube or Kube.connect(settings.kubeconfig or None, settings.context or None)
        try:
            return cls._wire(settings, base, metrics, notifier, commit_status, kube, daemon_settings, lease, pools)
        except BaseException:
            if given is None:  # the connection made here is ours to close; a caller's stays the caller's
                kube.close()
            raise

    @classmethod
    def _wire(cls, settings: RunSettings, base: RunSettings, metrics: Metrics, notifier: Notifier | None,
              commit_status: CommitStatusReporter | None, kube: Kube, daemon_settings: DaemonSettings | None,
              lease: LeaseSettings | None, pools: PoolRunner | None) -> Service:
        git = GitPass(git_settings(settings), kube, metrics, settings.allow_mass_prune, pools, notifier=notifier,
                      commit_status=commit_status)
        settings = startup_settings(settings, git.settings)
        if settings.log_format != base.log_format:
            set_format(settings.log_format)
        elector: LeaderElector | None = None
        if settings.leader_election:
            lease = lease or LeaseSettings(name=settings.lease_name, namespace=settings.lease_namespace)
            elector = LeaderElector(client.CoordinationV1Api(kube.api_client), lease)
        daemon = Daemon(daemon_settings or DaemonSettings(interval_s=settings.interval_s, jitter_s=settings.jitter_s),
                        git, metrics, elector)
        git.options = ApplyOptions(max_in_flight=settings.in_flight)
        git.status_commit_interval_s = settings.status_commit_interval_s
        git.later = lambda reason, delay: daemon.trigger(reason, delay)
        reactor: Reactor | None = None
        if settings.watch:  # its watches start with the first pass (the leader's): followers watch nothing
            reactor = Reactor(daemon.trigger)
            git.watch = WatchCache(kube, on_change=reactor, counters=metrics)
            metrics.watch_state = git.watch.state_by_kind
        running = settings
        hooks = ListenerHooks(
            branch=lambda: running.branch, secret=settings.webhook_secret(), trigger=daemon.trigger,
            healthy=daemon.health, ready=daemon.readiness, metrics=metrics)
        try:
            listener = Listener(*settings.listen_address, hooks)
        except OSError as err:
            if settings.listen == base.listen:
                raise
            # The repository's address (busy, not on this host): failing here would fail every start, before a
            # pass could read the fix. The operator's own address is bound instead.
            log.warning("cannot listen on %s from gitops-kaito.yaml (%s); listening on %s instead", settings.listen,
                        err, base.listen)
            listener = Listener(*base.listen_address, hooks)
            settings = dataclasses.replace(settings, listen=base.listen)
        service = cls(settings, base_settings=base, metrics=metrics, notifier=notifier, kube=kube, git=git,
                      daemon=daemon, elector=elector, listener=listener)
        service.reactor = reactor
        git.on_config = service._repo_config
        if elector is not None:
            elector.on_change = service._leadership
        return service

    def _repo_config(self, config: RepoConfig) -> None:
        """After a pass: follow a changed `daemon:` where that can be done live; say so where it needs a restart."""
        try:
            new = self.base_settings.with_repo(config.daemon, config.instance)
        except SettingsError as err:
            log.warning("%s; keeping the current settings", err)
            return
        self.daemon.reschedule(new.interval_s, new.jitter_s)
        if new.log_format != self.settings.log_format:
            set_format(new.log_format)
        for name in _AT_START:
            value = getattr(new, name)
            if value != getattr(self.settings, name) and (name, value) not in self._restart_noted:
                self._restart_noted.add((name, value))
                log.warning("gitops-kaito.yaml now sets %s to %s (running with %s); it applies at the next restart",
                            name, value, getattr(self.settings, name))
        self.settings = dataclasses.replace(self.settings, interval=new.interval, jitter=new.jitter,
                                            log_format=new.log_format)

    @property
    def url(self) -> str:
        return self.listener.url

    def _leadership(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        if not leading and self.notifier is not None:
            self.notifier.forget()  # the new leader announces meanwhile; leading again, this replica seeds anew
        if not leading and self.git.commit_status is not None:
            self.git.commit_status.forget()
        if not leading and self.git.watch is not None:
            self.git.watch.stop()  # a follower watches nothing; leading again, the first pass lists afresh
            self.git.memo.clear()
        if leading and self.git.watch is not None:
            self.git.watch.resume()
        if leading and self._started:
            # Passes skipped while following would otherwise wait a whole interval.
            self.daemon.trigger("became leader")

    def start(self) -> Service:
        self.listener.start()
        self._started = True
        self.daemon.start()
        log.info("gitops-kaito running: following %s (%s) every %s, listening on %s", self.settings.git_url,
                 self.settings.branch, self.settings.interval, self.url,
                 extra={"fields": {"leader_election": self.settings.leader_election}})
        if self.notifier is not None:
            for sink in self.notifier.sinks:
                log.info("notifications: %s to %s", sink.name, sink.where)
        if self.git.commit_status is not None:
            target = self.git.commit_status.target
            log.info("commit statuses: %s %s at %s", target.provider, target.repo, target.api_base)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Finish (or abandon after timeout_s) the current pass, release the Lease, close the listener."""
        if self._started:
            self.daemon.stop(timeout_s)
            self._started = False
        if self.notifier is not None:
            self.notifier.stop(min(timeout_s, 5.0))  # the last pass's events get a moment to go out
        if self.git.commit_status is not None:
            self.git.commit_status.stop(min(timeout_s, 5.0))
        self.listener.stop()
        if self.reactor is not None:
            self.reactor.stop()
        if self.git.watch is not None:
            self.git.watch.close()
        self.kube.close()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
