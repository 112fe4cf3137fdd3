"""A small benchmark framework: a registry of named benchmarks and helpers to run them.

An app registers benchmarks in its ``benchmarks.py``::

    from crm.benchmarking import BenchmarkContext, register

    @register("admin", help="Admin changelists at scale")
    def admin_changelists(ctx: BenchmarkContext) -> None:
        timing = ctx.time_calls(lambda: client.get(url), repeat=ctx.repeat)
        ctx.record("client_changelist", "p95", timing.p95_ms, "ms", target=300)

``python manage.py benchmark NAME`` autodiscovers those modules, makes sure the database holds
the demo data set of the asked size (seeding it when not), runs the benchmark and prints every
recorded figure as a table or as JSON lines.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.test.utils import CaptureQueriesContext
from django.utils.module_loading import autodiscover_modules

from crm.demo.seeding import ProgressStream

# The seed target: a million clients (with their ~10 purchase items each and everything else)
# in ten minutes.
SEED_TARGET_CLIENTS = 1_000_000
SEED_TARGET_SECONDS = 600


@dataclass(frozen=True)
class Result:
    """One measured figure. ``ok`` is None when there is no target to meet."""

    benchmark: str
    case: str
    metric: str
    value: float
    unit: str
    target: float | None
    ok: bool | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p95_ms(self) -> float:
        return percentile(self.samples_ms, 95)


class BenchmarkFailed(Exception):
    """A benchmark could not measure what it should (an error page, a missing row...)."""


@dataclass
class BenchmarkContext:
    name: str
    clients: int
    repeat: int
    progress: ProgressStream = field(default_factory=lambda: sys.stderr)
    using: str = DEFAULT_DB_ALIAS
    results: list[Result] = field(default_factory=list)

    def record(
        self,
        case: str,
        metric: str,
        value: float,
        unit: str,
        target: float | None = None,
        ok: bool | None = None,
        *,
        higher_is_better: bool = False,
    ) -> Result:
        """Record a figure; with a target and no explicit ``ok``, ok = value meets target."""
        if ok is None and target is not None:
            ok = value >= target if higher_is_better else value <= target
        result = Result(self.name, case, metric, round(float(value), 2), unit, target, ok)
        self.results.append(result)
        return result

    def note(self, text: str) -> None:
        self.progress.write(f"{self.name}: {text}\n")
        self.progress.flush()

    def time_calls(self, call: Callable[[], object], *, repeat: int | None = None) -> Timing:
        samples = []
        for _ in range(repeat or self.repeat):
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1000)
        return Timing(tuple(samples))

    def count_queries(self, call: Callable[[], object]) -> int:
        with CaptureQueriesContext(connections[self.using]) as captured:
            call()
        return len(captured.captured_queries)


BenchmarkFunction = Callable[[BenchmarkContext], None]


@dataclass(frozen=True)
class Benchmark:
    name: str
    function: BenchmarkFunction
    help: str = ""
    needs_demo_data: bool = True


_registry: dict[str, Benchmark] = {}


def register(
    name: str, *, help: str = "", needs_demo_data: bool = True
) -> Callable[[BenchmarkFunction], BenchmarkFunction]:
    def decorator(function: BenchmarkFunction) -> BenchmarkFunction:
        existing = _registry.get(name)
        if existing is not None and existing.function.__qualname__ != function.__qualname__:
            raise ValueError(f"benchmark {name!r} is registered twice")
        doc = help or (function.__doc__ or "").strip().splitlines()[0:1]
        _registry[name] = Benchmark(
            name, function, doc if isinstance(doc, str) else "".join(doc), needs_demo_data
        )
        return function

    return decorator


def benchmarks() -> dict[str, Benchmark]:
    """Every registered benchmark, after importing each installed app's ``benchmarks`` module."""
    autodiscover_modules("benchmarks")
    return dict(sorted(_registry.items()))


def percentile(values: tuple[float, ...] | list[float], q: float) -> float:
    """Nearest-rank percentile (p95 of 20 samples is the 19th smallest)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ensure_demo_data(ctx: BenchmarkContext, *, reseed: bool = False, seed: int = 1) -> None:
    """Reuse the database when it holds exactly ``ctx.clients`` clients; otherwise reseed.

    Seeding records its speed against the target of a million clients in ten minutes.
    """
    from crm.demo import seed as seed_demo
    from crm.models import Client

    existing = Client.objects.using(ctx.using).count()
    if existing == ctx.clients and not reseed:
        ctx.note(f"reusing the {existing:,} clients already in the database")
        ctx.record("seed_demo", "reused_clients", existing, "clients")
        return
    ctx.note(f"database has {existing:,} clients, seeding {ctx.clients:,} (flush first)")
    stats = seed_demo(
        clients=ctx.clients, seed=seed, flush=True, stdout=ctx.progress, using=ctx.using
    )
    clients_target = SEED_TARGET_CLIENTS / SEED_TARGET_SECONDS
    rows_per_client = stats.total_rows / max(stats.clients, 1)
    ctx.record(
        "seed_demo",
        "clients_per_s",
        stats.clients_per_second,
        "clients/s",
        target=round(clients_target, 2),
        higher_is_better=True,
    )
    ctx.record(
        "seed_demo",
        "rows_per_s",
        stats.rows_per_second,
        "rows/s",
        # This data set's rows per client, a million clients, ten minutes.
        target=round(rows_per_client * clients_target, 2),
        higher_is_better=True,
    )
    ctx.record("seed_demo", "rows", stats.total_rows, "rows")
    ctx.record("seed_demo", "seconds", stats.seconds, "s")
    vacuum_seconds = settle_after_load(ctx.using)
    if vacuum_seconds is not None:
        ctx.record("seed_demo", "vacuum_analyze_seconds", vacuum_seconds, "s")
    ctx.record(
        "seed_demo",
        "purchase_items_per_client",
        stats.rows.get("crm_purchaseitem", 0) / max(stats.clients, 1),
        "items",
    )


def settle_after_load(using: str = DEFAULT_DB_ALIAS) -> float | None:
    """VACUUM (ANALYZE) the freshly loaded tables on PostgreSQL; returns the seconds it took.

    Right after a bulk load every first read sets hint bits and no index-only scan is possible;
    autovacuum fixes that within minutes. Benchmarks measure that steady state, so they do it
    now (outside the seed's timing). Skipped inside a transaction (tests), where VACUUM cannot run.
    """
    from crm.demo.tables import TABLES

    connection = connections[using]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}")
    return time.perf_counter() - started


def format_table(results: list[Result]) -> str:
    headers = ("benchmark", "case", "metric", "value", "unit", "target", "ok")
    rows = [
        (
            r.benchmark,
            r.case,
            r.metric,
            f"{r.value:,.2f}",
            r.unit,
            "" if r.target is None else f"{r.target:,.2f}",
            {True: "ok", False: "MISS", None: ""}[r.ok],
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    numeric = {3, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [line(headers), line(tuple("-" * w for w in widths))]
    out += [line(row) for row in rows]
    return "\n".join(out)


def to_json_lines(results: list[Result]) -> str:
    return "\n".join(json.dumps(r.as_dict(), ensure_ascii=False) for r in results)
