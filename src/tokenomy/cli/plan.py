"""``tokenomy plan``: allocate budgets, what-if, capacity, TCO; ``tokenomy bench``."""

from __future__ import annotations

import asyncio
import csv
import functools
import getpass
import io
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import yaml

from tokenomy.cli.common import clean_errors, config_option, echo_json, load, print_table
from tokenomy.errors import InvalidRequest
from tokenomy.money import MILLION, parse_usd

PRECISIONS = click.Choice(["fp16", "bf16", "fp8", "int8", "int4", "fp4"])


def _usd(value: str | None, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_usd(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def _table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    print_table(table)


@click.group()
def plan() -> None:
    """Plan the economics: allocation, what-if, capacity and TCO."""


# -- capacity ------------------------------------------------------------------------------


@plan.command("capacity")
@click.option("--model", "model_name", required=True, help="Catalog model, e.g. llama-3.1-70b.")
@click.option("--gpu", "gpu_name", required=True, help="Catalog GPU, e.g. h100-sxm.")
@click.option("--gpus", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--weights", default="bf16", show_default=True, type=PRECISIONS)
@click.option(
    "--kv-cache", default=None, type=PRECISIONS, help="Default: 8-bit with 8-bit weights."
)
@click.option("--tp", default=None, type=click.IntRange(min=1), help="GPUs per replica.")
@click.option("--isl", default=1024, show_default=True, type=click.IntRange(min=1))
@click.option("--osl", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--concurrency", default=None, type=click.IntRange(min=1))
@click.option("--max-tpot-ms", default=None, type=float, help="Latency target per token.")
@click.option("--max-ttft-ms", default=None, type=float, help="Latency target to first token.")
@click.option("--gpu-hour-usd", default=None, help="GPU-hour price (default: none).")
@click.option("--utilization", default=1.0, show_default=True, type=click.FloatRange(0.01, 1))
@click.option("--traffic", default=None, type=float, help="Output tokens/s to serve → GPUs.")
@click.option("--catalog", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def capacity(
    model_name: str,
    gpu_name: str,
    gpus: int,
    weights: str,
    kv_cache: str | None,
    tp: int | None,
    isl: int,
    osl: int,
    concurrency: int | None,
    max_tpot_ms: float | None,
    max_ttft_ms: float | None,
    gpu_hour_usd: str | None,
    utilization: float,
    traffic: float | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Throughput, latency, max batch, GPUs and cost of a model on GPUs (roofline model).

    Without --concurrency or a latency target: the maximum-throughput operating point."""
    from tokenomy.planning.capacity import Deployment, Target, Workload
    from tokenomy.planning.catalog import load_catalogs
    from tokenomy.planning.sizing import capacity_report

    catalogs = load_catalogs(catalog)
    deployment = Deployment(
        catalogs.model(model_name), catalogs.gpu(gpu_name), gpus, weights, kv_cache, tp
    )
    report = capacity_report(
        deployment,
        Workload(isl, osl),
        Target(concurrency, max_tpot_ms, max_ttft_ms),
        _usd(gpu_hour_usd, "--gpu-hour-usd"),
        utilization,
        traffic,
    )
    if as_json:
        echo_json(report)
        return
    _table(["figure", "value"], [[k, v] for k, v in report.items()], "capacity (roofline)")


@plan.command("catalog")
@click.option("--catalog", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def catalog_command(catalog: str | None, as_json: bool) -> None:
    """The models and GPUs the capacity model knows."""
    from tokenomy.planning.catalog import load_catalogs

    catalogs = load_catalogs(catalog)
    models = [m.public() for m in catalogs.models.values()]
    gpus = [g.public() for g in catalogs.gpus.values()]
    if as_json:
        echo_json({"models": models, "gpus": gpus})
        return
    _table(
        ["model", "params", "active", "layers", "kv heads", "head dim"],
        [
            [
                m["name"],
                f"{m['params'] / 1e9:.1f}B",
                f"{m['active_params'] / 1e9:.1f}B",
                m["layers"],
                m["kv_heads"],
                m["head_dim"],
            ]
            for m in models
        ],
    )
    _table(
        ["gpu", "memory GB", "TB/s", "bf16 TFLOPS", "fp8 TFLOPS", "TDP W", "$/h"],
        [
            [
                g["name"],
                g["memory_gb"],
                g["bandwidth_tbs"],
                g["tflops"]["bf16"],
                g["tflops"].get("fp8", "-"),
                g["tdp_w"],
                g["hour_usd"],
            ]
            for g in gpus
        ],
    )


# -- tco -----------------------------------------------------------------------------------


def _ledger_api_spend(config_path: str | None, days: int) -> tuple[Decimal, Decimal]:
    """(USD per million tokens, tokens per 30 days) over the last ``days`` of the ledger."""
    from tokenomy import database
    from tokenomy.planning.ledger import api_spend

    spend = api_spend(database.connect(load(config_path).database), days)
    if spend is None:
        raise click.ClickException(f"the ledger has no usage in the last {days} days")
    return spend.usd_per_mtok, spend.monthly_tokens


@plan.command("tco")
@config_option
@click.option("--mode", type=click.Choice(["rent", "buy"]), default="buy", show_default=True)
@click.option("--gpus", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--tokens-per-s", type=float, default=None, help="Deployment throughput.")
@click.option("--model", "model_name", default=None, help="…or predict it: catalog model.")
@click.option("--gpu", "gpu_name", default=None, help="Catalog GPU (prices, power).")
@click.option("--weights", default="fp8", show_default=True, type=PRECISIONS)
@click.option("--isl", default=1024, show_default=True, type=int)
@click.option("--osl", default=256, show_default=True, type=int)
@click.option("--gpu-hour-usd", default=None, help="Rent price per GPU-hour.")
@click.option("--gpu-price-usd", default=None, help="Purchase price per GPU.")
@click.option("--server-overhead", default="0.25", show_default=True)
@click.option("--depreciation-months", default=36, show_default=True, type=int)
@click.option("--power-kw", default=None, help="Per GPU (default: the GPU's TDP).")
@click.option("--power-load", default="0.8", show_default=True)
@click.option("--pue", default="1.3", show_default=True)
@click.option("--kwh-usd", default="0.10", show_default=True)
@click.option("--ops-usd-per-month", default="0", show_default=True)
@click.option("--utilization", default="0.6", show_default=True)
@click.option("--api-usd-per-mtok", default=None, help="Default: the ledger's blended price.")
@click.option("--monthly-mtok", default=None, help="Default: the ledger's last 30 days.")
@click.option("--days", default=30, show_default=True, type=int, help="Ledger window.")
@click.option("--catalog", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def tco(config_path: str | None, **o: Any) -> None:
    """Self-hosting (rent or buy) against the API: cost per Mtok, break-even, payback."""
    from tokenomy.planning.sizing import all_tokens_per_s
    from tokenomy.planning.tco import compare, hosting_for

    gpu = None
    if o["gpu_name"]:
        from tokenomy.planning.catalog import load_catalogs

        catalogs = load_catalogs(o["catalog"])
        gpu = catalogs.gpu(o["gpu_name"])
    tokens_per_s = o["tokens_per_s"]
    if tokens_per_s is None:
        if not (o["model_name"] and gpu):
            raise click.UsageError("give --tokens-per-s, or --model and --gpu to predict it")
        from tokenomy.planning.capacity import Deployment, Workload

        tokens_per_s = all_tokens_per_s(
            Deployment(catalogs.model(o["model_name"]), gpu, o["gpus"], o["weights"]),
            Workload(o["isl"], o["osl"]),
        )
    api_price = _usd(o["api_usd_per_mtok"], "--api-usd-per-mtok")
    volume = None if o["monthly_mtok"] is None else Decimal(o["monthly_mtok"]) * MILLION
    if api_price is None or volume is None:
        ledger_price, ledger_volume = _ledger_api_spend(config_path, o["days"])
        api_price = api_price or ledger_price
        volume = volume if volume is not None else ledger_volume
    hosting = hosting_for(
        o["mode"],
        o["gpus"],
        Decimal(repr(float(tokens_per_s))),
        gpu,
        gpu_hour_usd=_usd(o["gpu_hour_usd"], "--gpu-hour-usd"),
        gpu_price_usd=_usd(o["gpu_price_usd"], "--gpu-price-usd"),
        gpu_power_kw=Decimal(o["power_kw"]) if o["power_kw"] else None,
        server_overhead=Decimal(o["server_overhead"]),
        depreciation_months=o["depreciation_months"],
        power_load=Decimal(o["power_load"]),
        pue=Decimal(o["pue"]),
        kwh_usd=Decimal(o["kwh_usd"]),
        ops_usd_per_month=parse_usd(o["ops_usd_per_month"]),
        utilization=Decimal(o["utilization"]),
    )
    result = compare(hosting, api_price, volume)
    if o["as_json"]:
        echo_json(result)
        return
    _table(["figure", "value"], [[k, v] for k, v in result.items()], f"TCO ({hosting.mode})")


# -- allocate ------------------------------------------------------------------------------


def _fill_from_ledger(raw: dict[str, Any], config_path: str | None, days: int) -> None:
    """``usd_per_mtok: ledger`` and ``demand_mtok: forecast`` → the line's run rate over
    the last ``days`` (scaled to 30 days) from the ledger, by its scope."""
    needs = [
        item
        for item in raw.get("lines") or []
        if isinstance(item, dict)
        and (item.get("usd_per_mtok") == "ledger" or item.get("demand_mtok") == "forecast")
    ]
    if not needs:
        return
    from tokenomy import database
    from tokenomy.planning.ledger import fill_plan

    fill_plan(raw, database.connect(load(config_path).database), days)


@plan.command("allocate")
@config_option
@click.argument("plan_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--days", default=30, show_default=True, help="Ledger window for forecasts.")
@click.option("--apply", "apply_", is_flag=True, help="Write the allocation as month budgets.")
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def allocate_command(
    config_path: str | None, plan_file: str, days: int, apply_: bool, as_json: bool
) -> None:
    """Split a monthly limit across lines by value (linear program, HiGHS)."""
    from tokenomy.planning.allocate import allocate, parse_plan

    raw = yaml.safe_load(Path(plan_file).read_text("utf-8")) or {}
    _fill_from_ledger(raw, config_path, days)
    the_plan = parse_plan(raw)
    result = allocate(the_plan)
    if result["status"] == "optimal" and apply_:
        result["applied"] = _apply_budgets(config_path, the_plan, result)
    if as_json:
        echo_json(result)
    elif result["status"] == "infeasible":
        click.echo(f"infeasible: {result['explanation']}")
    else:
        _table(
            ["line", "department", "env", "Mtok", "USD", "value"],
            [
                [a["line"], a["department"], a["environment"], a["mtok"], a["usd"], a["value"]]
                for a in result["allocation"]
            ],
            f"allocation of ${result['limit_usd']} (value {result['total_value']})",
        )
        _table(
            ["binding constraint", "meaning", "shadow price (value per $)"],
            [[b["constraint"], b["meaning"], b["shadow_price"]] for b in result["binding"]],
        )
    if result["status"] == "infeasible":
        sys.exit(2)


def _apply_budgets(config_path: str | None, the_plan: Any, result: dict[str, Any]) -> list[str]:
    from tokenomy import database
    from tokenomy.budgets.book import BudgetBook

    book = BudgetBook(database.connect(load(config_path).database))
    try:
        actor = f"cli:{getpass.getuser()}:plan"
    except (KeyError, OSError):
        actor = "cli:plan"
    written = []
    for line, allocated in zip(the_plan.lines, result["allocation"], strict=True):
        name = f"plan-{line.name}"
        budget = {"scope": line.scope, "period": "month", "limit_usd": allocated["usd"]}
        book.put(name, budget, actor)
        written.append(name)
    return written


# -- whatif --------------------------------------------------------------------------------


@plan.command("whatif")
@config_option
@click.option("--period", default=None, help="Ledger period: 2026-11, last-month, ...")
@click.option("--days", default=30, show_default=True, help="…or the last N days.")
@click.option("--group-by", default="team", show_default=True)
@click.option("--trace", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--trace-model", default=None, help="Model the trace's requests were sent to.")
@click.option(
    "--switch",
    "switches",
    multiple=True,
    help="FIELD=VALUE:MODEL (or model=A:B); MODEL may be a candidate (tokenomy candidates list).",
)
@click.option("--price", "prices", multiple=True, help="MODEL:IN_PER_MTOK:OUT_PER_MTOK.")
@click.option(
    "--base-price", "base_prices", multiple=True, help="Price of a model the config lacks."
)
@click.option("--cache", "caches", multiple=True, help="Share of requests served by cache.")
@click.option("--route", "routes", multiple=True, help="SHARE:CHEAPER_MODEL.")
@click.option("--growth", "growths", multiple=True, help="Volume factor, e.g. 2.")
@click.option("--combined/--no-combined", default=True, help="Add all changes as one column.")
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def whatif(
    config_path: str | None,
    period: str | None,
    days: int,
    group_by: str,
    trace: str | None,
    trace_model: str | None,
    switches: tuple[str, ...],
    prices: tuple[str, ...],
    base_prices: tuple[str, ...],
    caches: tuple[str, ...],
    routes: tuple[str, ...],
    growths: tuple[str, ...],
    combined: bool,
    as_json: bool,
) -> None:
    """Re-price a ledger period or a trace under alternatives, side by side."""
    from tokenomy.planning.whatif import parse_change, run, scenarios

    changes = [
        (kind, text)
        for kind, texts in (
            ("price", prices),
            ("switch", switches),
            ("route", routes),
            ("cache", caches),
            ("growth", growths),
        )
        for text in texts
    ]
    if not changes:
        raise click.UsageError("give at least one --switch, --price, --cache, --route, --growth")
    the_scenarios = scenarios(changes, combined)
    settings = None
    try:
        settings = load(config_path)
    except click.ClickException:
        if trace is None:
            raise
    known = {c.model: c.price for c in (parse_change("price", text) for text in base_prices)}
    configured = _price_lookup(settings)
    candidate = _CandidatePrices(settings)

    def lookup(name: str) -> Any:
        return known.get(name) or configured(name) or candidate(name)

    slices = _slices(settings, trace, trace_model, period, days, group_by)
    result = run(slices, the_scenarios, lookup)
    if candidate.used:
        result["self_hosted_candidates"] = candidate.used
    if trace:
        result["source"] = (
            f"trace {Path(trace).name}; Azure Public Dataset (Patel et al., Splitwise, "
            "ISCA 2024), CC-BY 4.0"
            if "azure" in Path(trace).name.lower()
            else f"trace {Path(trace).name}"
        )
    if as_json:
        echo_json(result)
        return
    names = result["scenarios"]
    rows = [[r["group"], *(r[n] for n in names)] for r in result["rows"]]
    rows.append(["TOTAL", *(result["total"][n] for n in names)])
    change = result["change_vs_baseline"]
    rows.append(
        ["vs baseline", *(f"{change[n]:+.1%}" if change[n] is not None else "" for n in names)]
    )
    _table([group_by if not trace else "hour", *names], rows, result.get("source"))


def _price_lookup(settings: Any) -> Any:
    if settings is None:
        return lambda name: None
    from tokenomy.pricing import Catalog

    catalog = Catalog.from_settings(settings)

    def lookup(name: str) -> Any:
        model = catalog.get(name)
        return None if model is None else model.price

    return lookup


class _CandidatePrices:
    """Candidate self-hosted models in the ledger (``tokenomy distill`` / ``quantize-eval``),
    priced at their projected GPU cost per million tokens; read once per name."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.conn: Any = None
        self.prices: dict[str, Any] = {}
        self.used: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        if self.settings is None:
            return None
        if name not in self.prices:
            from tokenomy import database
            from tokenomy.model import candidates

            self.conn = self.conn or database.connect(self.settings.database)
            row = candidates.get(self.conn, name)
            self.prices[name] = candidates.price(self.conn, name)
            if row is not None and self.prices[name] is not None:
                keep = ("source", "gpu", "weights", "isl", "osl", "usd_per_mtok_all_tokens")
                self.used[name] = {k: row[k] for k in keep}
        return self.prices[name]


def _slices(
    settings: Any,
    trace: str | None,
    trace_model: str | None,
    period: str | None,
    days: int,
    group_by: str,
) -> list[Any]:
    from tokenomy.planning.whatif import slices_from_trace

    if trace:
        if not trace_model:
            raise click.UsageError("--trace needs --trace-model (what the requests used)")
        return slices_from_trace(trace, trace_model)
    from tokenomy import database
    from tokenomy.planning.ledger import period_slices

    try:
        return period_slices(database.connect(settings.database), period, days, group_by)
    except InvalidRequest as exc:
        raise click.ClickException(exc.message) from None


# -- bench ---------------------------------------------------------------------------------


def _levels(text: str | None, kind: type) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()] if text else []


@click.command("bench")
@click.argument("url")
@click.option("--model", required=True, help="Model name sent in each request.")
@click.option("--api-key", default="none", envvar="TOKENOMY_BENCH_API_KEY")
@click.option("--header", "headers", multiple=True, help="NAME:VALUE, repeatable.")
@click.option("--concurrency", default=None, help="Comma list, e.g. 1,4,16 (closed loop).")
@click.option("--rate", default=None, help="Comma list of Poisson request rates per second.")
@click.option("--requests", "count", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--input-tokens", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--output-tokens", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--trace", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--slo-ttft-ms", default=None, type=float)
@click.option("--slo-tpot-ms", default=None, type=float)
@click.option("--slo-e2el-ms", default=None, type=float)
@click.option("--gpu-hour-usd", default=None)
@click.option("--gpus", default=1, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "csv_path", default=None, type=click.Path(dir_okay=False))
@clean_errors
def bench(url: str, **o: Any) -> None:
    """Load-test an OpenAI-compatible endpoint URL (its /v1 base): TTFT, ITL, TPOT, e2e
    percentiles, throughput, goodput (vLLM benchmark metric names)."""
    from rich.progress import Progress

    from tokenomy.bench.loadgen import Target, run_load
    from tokenomy.bench.metrics import summarize

    shapes = _shapes(o["trace"], o["count"], o["input_tokens"], o["output_tokens"])
    headers = []
    for item in o["headers"]:
        name, sep, value = item.partition(":")
        if not sep:
            raise click.BadParameter(f"{item!r}: use NAME:VALUE", param_hint="--header")
        headers.append((name.strip(), value.strip()))
    target = Target(url, o["model"], o["api_key"], tuple(headers))
    levels: list[tuple[str, float]] = [("concurrency", c) for c in _levels(o["concurrency"], int)]
    levels += [("rate", r) for r in _levels(o["rate"], float)]
    if not levels:
        levels = [("concurrency", 1)]
    results = []
    for kind, level in levels:
        with Progress(console=_stderr_console(), transient=True) as progress:
            task = progress.add_task(f"{kind} {level:g}", total=len(shapes))
            samples, duration = asyncio.run(
                run_load(
                    target,
                    shapes,
                    concurrency=int(level) if kind == "concurrency" else None,
                    rate=level if kind == "rate" else None,
                    seed=o["seed"],
                    on_done=functools.partial(progress.advance, task),
                )
            )
        summary = summarize(
            samples,
            duration,
            slo_ttft_ms=o["slo_ttft_ms"],
            slo_tpot_ms=o["slo_tpot_ms"],
            slo_e2el_ms=o["slo_e2el_ms"],
            gpu_hour_usd=_usd(o["gpu_hour_usd"], "--gpu-hour-usd"),
            gpus=o["gpus"],
        )
        results.append({kind: level, **summary})
    if o["csv_path"]:
        _write_csv(o["csv_path"], results)
    if o["as_json"]:
        echo_json(results if len(results) > 1 else results[0])
        return
    keys = ["completed", "output_throughput", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms"]
    keys += ["mean_itl_ms", "p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms"]
    keys += [k for k in ("request_goodput", "usd_per_mtok_output") if k in results[0]]
    _table(["load", *keys], [[_load(r), *(r.get(k, "") for k in keys)] for r in results])


def _load(result: dict[str, Any]) -> str:
    if "concurrency" in result:
        return f"concurrency {result['concurrency']:g}"
    return f"rate {result['rate']:g}/s"


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _shapes(trace: str | None, count: int, isl: int, osl: int) -> list[Any]:
    from tokenomy.bench.loadgen import Shape

    if not trace:
        return [Shape(isl, osl) for _ in range(count)]
    shapes = []
    with open(trace, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            shapes.append(
                Shape(max(1, int(row["ContextTokens"])), max(1, int(row["GeneratedTokens"])))
            )
            if len(shapes) == count:
                break
    if not shapes:
        raise click.BadParameter("the trace has no rows", param_hint="--trace")
    return shapes


def _write_csv(path: str, results: list[dict[str, Any]]) -> None:
    columns = sorted({k for r in results for k in r if k != "errors"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(results)
    Path(path).write_text(buffer.getvalue(), "utf-8")
