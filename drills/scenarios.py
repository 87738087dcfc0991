"""The failure drills: each breaks one dependency of the running platform under load, measures what
clients saw, and checks the invariants that must hold whatever breaks.

Every drill returns a :class:`DrillResult`: time to detect, time to recover, requests failed by
status, data lost (acknowledged writes the database does not hold — must be 0) and its invariants.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from psycopg import sql

from tenant_provisioner.billing import webhooks
from tenant_provisioner.billing.usage import report_usage
from tenant_provisioner.db import admin_connect
from tenant_provisioner.drills.interruption import Probe, measure
from tenant_provisioner.errors import TransientError
from tenant_provisioner.limits.enforcer import run_cycle
from tenant_provisioner.tenants.lifecycle import CREATE_LEASE_TTL_S, CREATE_LOCK_TIMEOUT_S
from tenant_provisioner.tenants.provisioning import CreateRequest
from drills.platform import ACTOR, STRIPE_WEBHOOK_SECRET, TENANTS, LoadRun, Platform
from tests.billing.stripe_server import sign_webhook


@dataclass
class DrillResult:
    name: str
    what: str
    figures: dict[str, Any]
    data_lost: int
    invariants: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.data_lost == 0 and all(passed for _, passed, _ in self.invariants)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.invariants.append((name, bool(passed), detail))


def _server_failures(sample) -> bool:
    """What a client calls broken: a 5xx or no answer. A 429 is the limiter deciding, not a failure."""
    return not (isinstance(sample.status, int) and sample.status < 500)


def _failed_share(samples: list) -> float:
    return sum(1 for s in samples if _server_failures(s)) / max(1, len(samples))


def _figures(run: LoadRun, fault_at: float, back_at: float) -> dict[str, Any]:
    samples = run.as_samples()
    figures = measure(samples, fault_at, counts_as_failure=_server_failures).to_json()
    statuses = Counter(str(s.status) for s in samples if s.at >= fault_at)
    figures["responses_by_status"] = dict(sorted(statuses.items()))
    steady = fault_at - _warmup_seconds(run, fault_at) / 2
    figures["baseline_failed_share"] = round(_failed_share([s for s in samples if steady <= s.at < fault_at]), 4)
    figures["clients_recovered_after_return_s"] = _clients_recovered(samples, back_at, figures["baseline_failed_share"])
    return figures


def _clients_recovered(samples: list, back_at: float, baseline: float) -> float | None:
    """Seconds after the return from which every following second of tenant requests fails no more
    than the baseline did (at most 2x, at least 5 %); None when that never happened within the run."""
    after = [s for s in samples if s.at >= back_at]
    if not after:
        return None
    seconds: dict[int, list] = defaultdict(list)
    for sample in after:
        seconds[int(sample.at - back_at)].append(sample)
    last = max(seconds)
    bad = [second for second in range(last + 1) if _failed_share(seconds.get(second, [])) > max(0.05, 2 * baseline)]
    if not bad:
        return 0.0
    recovered = bad[-1] + 1
    return float(recovered) if recovered <= last else None


def _baseline(result: DrillResult, run: LoadRun, fault_at: float) -> None:
    """The drill means something only if the load was served before the fault: requests admitted,
    and no answer but 2xx, 429 (the limiter) and 503 (the connection budget's backpressure)."""
    before = [s["status"] for s in run.samples if s["at"] < fault_at and " /v1/" in s["name"]]
    ok = sum(1 for status in before if isinstance(status, int) and 200 <= status < 300)
    other = Counter(str(x) for x in before if not (isinstance(x, int) and (200 <= x < 300 or x in (429, 503))))
    result.check("the load was served before the fault", ok >= 10 and not other,
                 f"{ok} admitted of {len(before)} requests; {Counter(str(x) for x in before if x in (429, 503))} "
                 f"limited or backpressure; others: {dict(other)}")


def _warmup_seconds(run: LoadRun, fault_at: float) -> float:
    """Seconds the load ran before the fault."""
    return fault_at - min((s["at"] for s in run.samples), default=fault_at)


def _unaffected(result: DrillResult, run: LoadRun, fault_at: float, what: str) -> None:
    """A fault the API does not depend on must not raise its failure share above the baseline's
    (a few 503s under this load are the connection budget's backpressure, before and after)."""
    def share(samples: list) -> float:
        failed = sum(1 for s in samples if _server_failures(s))
        return failed / max(1, len(samples))
    samples = run.as_samples()
    steady = fault_at - _warmup_seconds(run, fault_at) / 2
    before = share([s for s in samples if steady <= s.at < fault_at])
    after = share([s for s in samples if s.at >= fault_at])
    result.check(f"the API is unaffected by {what}", after <= max(0.05, 2 * before + 0.02),
                 f"failed share {after:.2%} after the fault vs {before:.2%} before")


def _stack_traces(run: LoadRun) -> int:
    return sum(1 for s in run.samples if s.get("stack_trace"))


def _recovered_within(platform: Platform, result: DrillResult, ready: dict[str, Any]) -> None:
    """Back to normal within the stated bound after the dependency returned: readiness, and the
    tenants' requests (failures no worse than before the fault)."""
    bound = platform.timing.recover_within
    clients = result.figures["clients_recovered_after_return_s"]
    readiness = ready["recovered_after_return_s"] if ready["failed"] else 0.0
    result.check(f"back to normal within {bound:.0f} s of the return (readiness and tenant requests)",
                 clients is not None and clients <= bound and readiness is not None and readiness <= bound,
                 f"tenant requests normal {_after(clients)}, /readyz 200 for good {_after(readiness)}")


def _after(seconds: float | None) -> str:
    return "never (within the run)" if seconds is None else f"{seconds:.1f} s after the return"


def _admitted_against_limit(platform: Platform, run: LoadRun, start: float, end: float) -> list[tuple[bool, str]]:
    """Per tenant: (over its limit?, "admitted/limit") for 2xx between ``start`` and ``end``, the
    limit being the tier's rate x window + burst."""
    admitted: dict[str, int] = defaultdict(int)
    for sample in run.samples:
        if start <= sample["at"] <= end and isinstance(sample["status"], int) and 200 <= sample["status"] < 300 \
                and " /v1/" in sample["name"]:
            admitted[sample["tenant"]] += 1
    report = []
    tiers = dict(TENANTS)
    for tenant, count in sorted(admitted.items()):
        tier = platform.catalog.tiers[tiers[tenant]]
        limit = tier.rate_per_second * (end - start) + tier.burst
        report.append((count > limit, f"{tenant} {count}/{limit:.0f}"))
    return report


def redis_drill(platform: Platform) -> DrillResult:
    """Redis killed (every key gone), then restarted empty."""
    t = platform.timing
    result = DrillResult("redis", f"Redis killed for {t.outage:.0f} s, then restarted empty ({t.users} users)", {}, 0)
    with platform.load(t.warmup + t.outage + t.settle) as run, \
            Probe(base_url=platform.api_url, paths=("/readyz",), interval=0.1, workers=1) as ready:
        time.sleep(t.warmup)
        fault_at, fault_mono = time.time(), time.monotonic()
        platform.redis.kill()
        time.sleep(t.outage)
        back_at, back_mono = time.time(), time.monotonic()
        platform.redis.start()
        time.sleep(t.settle)
    _baseline(result, run, fault_at)
    result.figures = _figures(run, fault_at, back_at)
    result.figures["readyz"] = measure(ready.samples, fault_mono).to_json()
    admitted = _admitted_against_limit(platform, run, fault_at, back_at)
    result.check("strict, never open: no tenant admitted above rate x time + burst during the outage",
                 admitted and not any(over for over, _ in admitted),
                 "admitted/limit: " + ", ".join(text for _, text in admitted))
    _unaffected(result, run, fault_at, "Redis's loss: the degraded limiter keeps deciding")
    _recovered_within(platform, result, _after_return(ready, back_mono, t.recover_within))
    result.check("no 5xx carries a stack trace", _stack_traces(run) == 0, f"{_stack_traces(run)} with a trace")
    lost = platform.lost_writes(run)
    result.data_lost = len(lost)
    result.figures["lost"] = lost[:5]
    return result


def _after_return(probe: Probe, back_mono: float, bound: float) -> dict[str, Any]:
    """When /readyz answered 200 for good after the dependency returned."""
    after = [s for s in probe.samples if s.at >= back_mono]
    failures = [s for s in after if not s.ok]
    last = failures[-1].at if failures else None
    ok_after = next((s.at for s in after if s.ok and (last is None or s.at > last)), None)
    return {"failed": len(failures), "recovered_after_return_s":
            None if ok_after is None else round(ok_after - back_mono, 2), "bound": bound}


# The readiness invariant of the PostgreSQL drill is read from at least this many probes.
PROBES_WHILE_AWAY = 3


def _away_long_enough(probe: Probe, probes: int = PROBES_WHILE_AWAY) -> float:
    """Seconds PostgreSQL must stay away once down for the window the readiness invariant reads
    (which ends one probe timeout before the return) to hold at least ``probes`` probes, even if
    every one waits out its timeout: each worker sends one at least every timeout + interval; half a
    second more for a loaded machine's scheduling."""
    rounds = math.ceil(probes / probe.workers)
    return probe.timeout + rounds * (probe.timeout + probe.interval) + 0.5


def _not_ready_while_away(result: DrillResult, probe: Probe, *, down: float, back: float) -> None:
    """/readyz never 200 (nor another error) while PostgreSQL is away. The kubelet's readiness probe
    (k8s/chart.py) gives up after 2 s, as this probe does: a timeout is "not ready" to Kubernetes too.
    Probes sent in the last probe timeout before the return may be answered after it, so the window
    ends there; a window without probes measured nothing and fails."""
    name = (f"/readyz says not ready (503, or no answer within the {probe.timeout:g} s probe timeout) "
            "while PostgreSQL is away")
    during = Counter(str(s.status) for s in probe.samples if down < s.at <= back - probe.timeout)
    if not during:
        window = max(0.0, back - probe.timeout - down)
        result.check(name, False, f"not measured: no probe was sent in the {window:.1f} s between the stop and "
                                  "one probe timeout before the return")
        return
    wrong = {status: n for status, n in during.items() if status not in ("503", "timeout")}
    result.check(name, not wrong, f"{sum(during.values())} probes: {dict(during)}")


def postgres_drill(platform: Platform) -> DrillResult:
    """PostgreSQL stopped (clients disconnected), then started; a signup is in flight meanwhile. It
    stays away ``timing.outage``, or longer when the readiness invariant needs it."""
    t = platform.timing
    api_pid = platform.api.pid
    signup = _RetriedSignup(platform, "drill-signup-during-outage")
    ready = Probe(base_url=platform.api_url, paths=("/readyz",), interval=0.1, workers=3)
    with platform.load(t.warmup + max(t.outage, _away_long_enough(ready)) + t.settle) as run, ready:
        time.sleep(t.warmup)
        signup.start()
        fault_at, fault_mono = time.time(), time.monotonic()
        platform.pg.stop("fast")          # returns once the server is down (clients disconnected)
        down_mono = time.monotonic()
        time.sleep(max(0.0, fault_mono + t.outage - down_mono, _away_long_enough(ready)))
        back_at, back_mono = time.time(), time.monotonic()
        platform.pg.start()
        time.sleep(t.settle)
    signup.join(timeout=_RetriedSignup.JOIN_WITHIN)
    result = DrillResult("postgres", f"PostgreSQL stopped for {back_mono - fault_mono:.0f} s, then started "
                                     f"({t.users} users, a signup in flight)", {}, 0)
    _baseline(result, run, fault_at)
    result.figures = _figures(run, fault_at, back_at)
    result.figures["readyz"] = measure(ready.samples, fault_mono).to_json()
    _not_ready_while_away(result, ready, down=down_mono, back=back_mono)
    traces = _stack_traces(run)
    result.check("no 500 carries a stack trace", traces == 0, f"{traces} 5xx bodies with a trace; statuses "
                                                             f"{result.figures['responses_by_status']}")
    _recovered_within(platform, result, _after_return(ready, back_mono, t.recover_within))
    clients = result.figures["clients_recovered_after_return_s"]
    same_process = platform.api.poll() is None and platform.api.pid == api_pid
    result.check("pools recover without a restart (same API process serves normally again)",
                 same_process and clients is not None and clients <= t.recover_within,
                 f"API pid {api_pid} {'still running' if same_process else 'GONE'}; tenant requests normal "
                 f"{_after(clients)}")
    result.check("the signup in flight converges when retried", signup.converged, signup.detail)
    lost = platform.lost_writes(run)
    result.data_lost = len(lost)
    result.figures["lost"] = lost[:5]
    result.figures["signup_attempts"] = signup.attempts
    return result


class _RetriedSignup(threading.Thread):
    """What a signup caller does: try, and on a transient error retry (the same request) until done.

    An attempt cut by the stop leaves its create lease row behind (a clean restart keeps the unlogged
    ``control.leases``); a lease taken before the server started is free at once (tenant_provisioner/
    leases.py), so the retries converge within seconds of the return. The caller would still keep
    trying for a lease's TTL, as the signup path does; the detail says how long converging took."""

    GIVE_UP_AFTER = CREATE_LEASE_TTL_S + CREATE_LOCK_TIMEOUT_S
    # The last attempt may wait CREATE_LOCK_TIMEOUT_S for the lease, then the check runs.
    JOIN_WITHIN = GIVE_UP_AFTER + CREATE_LOCK_TIMEOUT_S + 15

    def __init__(self, platform: Platform, tenant_id: str) -> None:
        super().__init__(daemon=True)
        self.platform, self.tenant_id = platform, tenant_id
        self.attempts, self.converged, self.detail = 0, False, "not finished"
        self.seconds: float | None = None

    def run(self) -> None:
        request = CreateRequest.parse({"tenant_id": self.tenant_id, "tier": "starter", "admin_email": "a@example.com"})
        started = time.monotonic()
        deadline = started + self.GIVE_UP_AFTER
        while time.monotonic() < deadline:
            self.attempts += 1
            try:
                with self.platform.database() as db, db.connection() as conn:
                    self.platform.lifecycle.create(conn, request, actor=ACTOR)
                break
            except TransientError:
                time.sleep(0.5)
        self.seconds = time.monotonic() - started
        self.converged, self.detail = self._verify()

    def _verify(self) -> tuple[bool, str]:
        with self.platform.database() as db, db.connection() as conn:
            again = self.platform.lifecycle.create(conn, CreateRequest.parse(
                {"tenant_id": self.tenant_id, "tier": "starter", "admin_email": "a@example.com"}), actor=ACTOR)
            row = conn.execute("SELECT state, schema_name, role_name FROM control.tenants WHERE tenant_id = %s",
                               (self.tenant_id,)).fetchone()
            if row is None:
                return False, f"no tenant after {self.attempts} attempts"
            state, schema, role = row
            has_schema = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
            has_role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        ok = state == "active" and bool(has_schema) and bool(has_role) and not again.created
        return ok, (f"{self.attempts} attempt(s) in {self.seconds:.0f} s; state {state}, schema {'present' if has_schema else 'MISSING'}, "
                    f"role {'present' if has_role else 'MISSING'}, retry after success created nothing: "
                    f"{not again.created}")


WORKER_TENANT = "drill-business-a"
WORKER_BUDGETS = 150


def worker_drill(platform: Platform) -> DrillResult:
    """The worker killed (SIGKILL) while it runs a tenant's budget evaluation, then restarted."""
    t = platform.timing
    result = DrillResult("worker", f"worker killed mid-job (SIGKILL), restarted after {t.outage:.0f} s "
                                   f"({t.users} users)", {}, 0)
    project = platform.call("POST", "/v1/projects", WORKER_TENANT, {"name": "budgets"})["id"]
    budgets = [platform.call("POST", "/v1/budgets", WORKER_TENANT, {"project_id": project, "amount_usd": "1.00"})["id"]
               for _ in range(WORKER_BUDGETS)]
    platform.call("POST", "/v1/usage", WORKER_TENANT, {"project_id": project, "provider": "openai", "model": "gpt-4o",
                                                      "cost_usd": "5.00"})
    with platform.load(t.warmup + t.outage + t.settle) as run:
        time.sleep(t.warmup)
        # The usage above queued an evaluation of every budget: kill the worker while it runs it.
        platform.start_worker()
        job_id, attempts = _wait_for_running_job(platform, WORKER_TENANT)
        fault_at, fault_mono = time.time(), time.monotonic()
        platform.kill_worker()
        time.sleep(t.outage)
        back_at = time.time()
        platform.start_worker()
        reclaimed_mono, done_mono = _wait_for_job(platform, job_id, attempts, t.recover_within + t.outage + 10)
        time.sleep(max(0.0, t.settle - (time.monotonic() - fault_mono - t.outage)))
    _baseline(result, run, fault_at)
    result.figures = _figures(run, fault_at, back_at)
    result.figures["job"] = {"id": job_id, "killed_in_attempt": attempts,
                             "time_to_detect_s": None if reclaimed_mono is None else round(reclaimed_mono - fault_mono, 2),
                             "time_to_recover_s": None if done_mono is None else round(done_mono - fault_mono, 2)}
    result.figures["time_to_detect_s"] = result.figures["job"]["time_to_detect_s"]
    result.figures["time_to_recover_s"] = result.figures["job"]["time_to_recover_s"]
    final_attempts, state = _job_state(platform, job_id)
    result.check("the killed job runs again and finishes", state == "done" and final_attempts > attempts,
                 f"job {job_id}: state {state}, attempts {final_attempts} (killed in attempt {attempts})")
    alerts = _alerts_per_budget(platform, WORKER_TENANT)
    duplicates = {b: n for b, n in alerts.items() if n > 2}
    missing = [b for b in budgets if alerts.get(b, 0) < 2]
    result.check("its effect happens once: one warning and one exceeded alert per budget",
                 not duplicates and not missing,
                 f"{len(budgets)} budgets, {sum(alerts.values())} alerts; duplicated: {len(duplicates)}, "
                 f"missing: {len(missing)}")
    _unaffected(result, run, fault_at, "the worker's death")
    lost = platform.lost_writes(run)
    result.data_lost = len(lost) + len(missing)
    result.figures["lost"] = (lost + [f"alerts of budget {b}" for b in missing])[:5]
    return result


def _wait_for_running_job(platform: Platform, tenant_id: str, seconds: float = 60) -> tuple[int, int]:
    deadline = time.monotonic() + seconds
    with platform.database() as db, db.connection() as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT id, attempts FROM control.jobs WHERE tenant_id = %s AND state = 'running'"
                               " AND kind = 'evaluate_budgets'", (tenant_id,)).fetchone()
            if row is not None:
                return row[0], row[1]
            time.sleep(0.005)
    raise RuntimeError(f"no running evaluate_budgets job of {tenant_id} within {seconds:.0f}s")


def _job_state(platform: Platform, job_id: int) -> tuple[int, str]:
    with platform.database() as db, db.connection() as conn:
        return conn.execute("SELECT attempts, state FROM control.jobs WHERE id = %s", (job_id,)).fetchone()


def _wait_for_job(platform: Platform, job_id: int, attempts: int, seconds: float) -> tuple[float | None, float | None]:
    """When the job was claimed again (a later attempt) and when it was done (monotonic)."""
    reclaimed = done = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and done is None:
        now_attempts, state = _job_state(platform, job_id)
        if reclaimed is None and now_attempts > attempts:
            reclaimed = time.monotonic()
        if state == "done":
            done = time.monotonic()
            reclaimed = reclaimed or done
        time.sleep(0.05)
    return reclaimed, done


def _alerts_per_budget(platform: Platform, tenant_id: str) -> dict[int, int]:
    with admin_connect(platform.database_url) as conn:
        schema = conn.execute("SELECT schema_name FROM control.tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()[0]
        rows = conn.execute(sql.SQL("SELECT budget_id, count(*) FROM {}.alerts GROUP BY budget_id").format(
            sql.Identifier(schema))).fetchall()
    return {budget: count for budget, count in rows}


def stripe_drill(platform: Platform) -> DrillResult:
    """The Stripe test server down (every call answered 503) while usage is reported and a webhook
    event is delivered; it comes back; the event is delivered again, as Stripe retries."""
    t = platform.timing
    result = DrillResult("stripe", f"Stripe down for {t.outage:.0f} s during usage reporting and a webhook "
                                   f"({t.users} users)", {}, 0)
    redis_client = platform.redis_client
    event = _payment_failed_event(platform)
    reports: list[tuple[float, Any]] = []
    with platform.database() as db:
        def report() -> Any:
            """One enforcer cycle (measures admitted requests) and one usage report, as scheduled."""
            run_cycle(db, redis_client, notifier=lambda notice: None, lifecycle=platform.lifecycle,
                      catalog=platform.catalog, actor=ACTOR)
            with db.connection() as conn:
                outcome = report_usage(conn, platform.stripe_client, platform.billing_settings)
            reports.append((time.monotonic(), outcome))
            return outcome

        with platform.load(t.warmup + t.outage + t.settle) as run:
            time.sleep(t.warmup)
            baseline = report()
            fault_at, fault_mono = time.time(), time.monotonic()
            platform.stripe.down(True)
            during = report()
            with db.connection() as conn:
                first_delivery = webhooks.handle(conn, *event, secret=STRIPE_WEBHOOK_SECRET,
                                                 settings=platform.billing_settings, lifecycle=platform.lifecycle)
            time.sleep(t.outage)
            back_at, back_mono = time.time(), time.monotonic()
            platform.stripe.down(False)
            while time.monotonic() - back_mono < t.recover_within:   # the next scheduled runs, closer together
                if report().stripe_unavailable is False and not reports[-1][1].deferred:
                    break
                time.sleep(1)
            recovered_mono = reports[-1][0]
            with db.connection() as conn:
                redelivery = webhooks.handle(conn, *event, secret=STRIPE_WEBHOOK_SECRET,
                                             settings=platform.billing_settings, lifecycle=platform.lifecycle)
            time.sleep(t.settle)
        final = report()          # the load has ended: everything admitted is measured and reported now
        again = report()
    _baseline(result, run, fault_at)
    result.figures = _figures(run, fault_at, back_at)
    result.figures["time_to_detect_s"] = round(reports[1][0] - fault_mono, 2) if during.stripe_unavailable else None
    result.figures["time_to_recover_s"] = round(recovered_mono - fault_mono, 2)
    result.figures["usage"] = {"before": baseline.units, "during_outage_reported": during.units,
                               "deferred_during_outage": len(during.deferred), "after_return": final.units}
    result.check("usage reporting sees the outage and defers (the cursor does not move)",
                 during.stripe_unavailable and during.units == 0, f"{len(during.deferred)} interval(s) deferred, "
                                                                  f"{during.units} units reported")
    unreported = _unreported_usage(platform)
    result.check("every admitted request is reported to Stripe once it is back",
                 not unreported, "; ".join(unreported) or "Stripe's meter totals equal the admitted counts")
    result.check("reported once: a further run sends nothing", again.sent == 0 and again.units == 0,
                 f"second run after recovery sent {again.sent} event(s)")
    applied = _webhook_applications(platform, event_id=json.loads(event[0])["id"])
    result.check("the webhook delivered during the outage and again after is applied once",
                 first_delivery.status == 200 and redelivery.status == 200 and applied == 1,
                 f"deliveries answered {first_delivery.status}/{redelivery.status} "
                 f"('{redelivery.outcome}'); effect recorded {applied} time(s)")
    _unaffected(result, run, fault_at, "Stripe's outage")
    lost = platform.lost_writes(run)
    result.data_lost = len(lost) + len(unreported)
    result.figures["lost"] = (lost + unreported)[:5]
    return result


def _payment_failed_event(platform: Platform) -> tuple[bytes, str]:
    """A signed ``invoice.payment_failed`` for the first tenant, as Stripe would deliver it."""
    with platform.database() as db, db.connection() as conn:
        customer = conn.execute("SELECT stripe_customer_id FROM control.billing_accounts WHERE tenant_id = %s",
                                (TENANTS[0][0],)).fetchone()[0]
    payload = json.dumps({"id": f"evt_drill_{time.time_ns()}", "type": "invoice.payment_failed",
                          "created": int(time.time()), "data": {"object": {
                              "id": "in_drill", "object": "invoice", "customer": customer, "amount_due": 900,
                              "attempt_count": 1}}}).encode()
    return payload, sign_webhook(payload, STRIPE_WEBHOOK_SECRET)


def _unreported_usage(platform: Platform) -> list[str]:
    with platform.database() as db, db.connection() as conn:
        rows = conn.execute("SELECT u.tenant_id, a.stripe_customer_id, sum(u.admitted) FROM control.tenant_usage u"
                            " JOIN control.billing_accounts a USING (tenant_id) WHERE u.quantity = 'api_requests'"
                            " GROUP BY 1, 2 ORDER BY 1").fetchall()
    event_name = platform.billing_settings.meter_event_name
    return [f"{tenant}: admitted {admitted}, Stripe has {platform.stripe.metered_total(event_name, customer):.0f}"
            for tenant, customer, admitted in rows
            if platform.stripe.metered_total(event_name, customer) != admitted]


def _webhook_applications(platform: Platform, *, event_id: str) -> int:
    with platform.database() as db, db.connection() as conn:
        return conn.execute("SELECT count(*) FROM control.audit_log WHERE action = 'billing.payment_failed'"
                            " AND detail->>'event_id' = %s", (event_id,)).fetchone()[0]


DRILLS: dict[str, Callable[[Platform], DrillResult]] = {
    "redis": redis_drill, "postgres": postgres_drill, "worker": worker_drill, "stripe": stripe_drill}
