"""python manage.py benchmark NAME [--clients N] [--repeat R] [--json] [--reseed]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.benchmarking import (
    BenchmarkContext,
    BenchmarkFailed,
    benchmarks,
    ensure_demo_data,
    format_table,
    to_json_lines,
)


class Command(BaseCommand):
    help = (
        "Run a registered benchmark (see each app's benchmarks.py) against the demo data set, "
        "seeding it first when the database does not hold --clients clients."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Benchmark name, e.g. admin.")
        parser.add_argument(
            "--clients", type=int, default=20_000, help="Demo data size (default 20,000)."
        )
        parser.add_argument(
            "--repeat", type=int, default=20, help="Timed repetitions per case (default 20)."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="One JSON object per figure and line on stdout; progress goes to stderr.",
        )
        parser.add_argument(
            "--reseed", action="store_true", help="Flush and seed even if the size matches."
        )
        parser.add_argument("--seed", type=int, default=1, help="Seed for demo data (default 1).")

    def handle(self, *args: Any, **options: Any) -> None:
        known = benchmarks()
        name: str = options["name"]
        benchmark = known.get(name)
        if benchmark is None:
            listing = ", ".join(known) or "none registered"
            raise CommandError(f"unknown benchmark {name!r}; known benchmarks: {listing}")
        if options["clients"] < 1 or options["repeat"] < 1:
            raise CommandError("--clients and --repeat must be at least 1")

        ctx = BenchmarkContext(
            name=name,
            clients=options["clients"],
            repeat=options["repeat"],
            progress=self.stderr,
        )
        try:
            if benchmark.needs_demo_data:
                ensure_demo_data(ctx, reseed=options["reseed"], seed=options["seed"])
            benchmark.function(ctx)
        except BenchmarkFailed as exc:
            raise CommandError(f"benchmark {name} failed: {exc}") from exc

        if options["json"]:
            self.stdout.write(to_json_lines(ctx.results))
        else:
            self.stdout.write(format_table(ctx.results))
        missed = [r for r in ctx.results if r.ok is False]
        if missed:
            self.stderr.write(
                f"{len(missed)} of {sum(r.ok is not None for r in ctx.results)} targets missed: "
                + ", ".join(f"{r.case}.{r.metric}" for r in missed)
            )
