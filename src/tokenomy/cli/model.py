"""``tokenomy distill``, ``tokenomy quantize-eval`` and ``tokenomy candidates``: the model
layer (the ``model`` extra). Torch is imported inside the commands only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tokenomy.cli.common import clean_errors, config_option, echo_json, load, print_table
from tokenomy.errors import InvalidRequest

F = TypeVar("F", bound=Callable[..., Any])
EXTRA_HINT = "pip install 'tokenomy[model]' (PyTorch, transformers, torchao, optimum-quanto)"


def _require_extra(*modules: str) -> None:
    import importlib

    for name in ("torch", "transformers", *modules):
        try:
            importlib.import_module(name)
        except ImportError:
            raise click.ClickException(f"{name} is not installed: {EXTRA_HINT}") from None


def _table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    from rich.table import Table

    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    print_table(table)


def _connection(config_path: str | None, name_given: bool) -> Any:
    """The ledger to record candidates in; None when there is no config (and no --name
    asked for one)."""
    from tokenomy import database

    try:
        settings = load(config_path)
    except click.ClickException as exc:
        if name_given:
            raise click.ClickException(f"cannot record the candidate: {exc.message}") from None
        return None
    return database.connect(settings.database)


def _fmt_quality(quality: dict[str, Any]) -> str:
    if quality["metric"] == "perplexity":
        return f"perplexity {quality['value']:.3f}"
    return f"accuracy {quality['value']:.2%}"


def _usd(value: Any) -> str:
    return "" if value is None else f"${value:,.6g}"


def _mib(value: Any) -> str:
    return "" if value is None else f"{value / 2**20:,.2f} MiB"


gpu_options = [
    click.option("--gpu", default="l4", show_default=True, help="Catalog GPU to project on."),
    click.option("--isl", default=1024, show_default=True, type=click.IntRange(min=1)),
    click.option("--osl", default=256, show_default=True, type=click.IntRange(min=1)),
    click.option("--catalog", default=None, type=click.Path(dir_okay=False, exists=True)),
]


def _with(options: list[Any]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# -- distill -------------------------------------------------------------------------------


@click.command("distill")
@click.option("--teacher", required=True, type=click.Path(exists=True), help="Model folder.")
@click.option(
    "--student",
    required=True,
    type=click.Path(exists=True),
    help="Model folder (weights: continue from them) or a config (folder or .json: from scratch).",
)
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--eval-data", default=None, type=click.Path(dir_okay=False, exists=True))
@click.option("--eval-fraction", default=0.1, show_default=True, type=float)
@click.option("--alpha", default=0.5, show_default=True, type=click.FloatRange(0, 1))
@click.option("--temperature", default=2.0, show_default=True, type=click.FloatRange(min=0.01))
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", "learning_rate", default=5e-4, show_default=True, type=float)
@click.option("--weight-decay", default=0.0, show_default=True, type=float)
@click.option("--warmup-steps", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=2))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--task", type=click.Choice(["causal-lm", "classifier"]), default=None)
@click.option("--out", default="distilled", show_default=True, type=click.Path(file_okay=False))
@click.option("--checkpoint-every", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
@click.option(
    "--stop-after",
    default=None,
    type=click.IntRange(min=1),
    help="Train at most N steps now, checkpoint and exit (continue later with --resume).",
)
@_with(gpu_options)
@click.option("--weights", default="bf16", show_default=True, help="Precision on the GPU.")
@click.option("--name", default=None, help="Candidate name in the ledger (default: from --out).")
@click.option("--register/--no-register", default=True, help="Record the student as a candidate.")
@click.option("--min-seconds", default=2.0, show_default=True, type=float,
              help="Least time tokens/s of the two models are measured.")  # fmt: skip
@config_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def distill(**o: Any) -> None:
    """Distill a teacher into a student: L = a*T^2*KL(teacher_T || student_T) + (1-a)*CE."""
    _require_extra()
    from tokenomy.model import distill as run
    from tokenomy.model.train import TrainSettings

    settings = TrainSettings(
        alpha=o["alpha"],
        temperature=o["temperature"],
        epochs=o["epochs"],
        batch_size=o["batch_size"],
        learning_rate=o["learning_rate"],
        weight_decay=o["weight_decay"],
        warmup_steps=o["warmup_steps"],
        seed=o["seed"],
        checkpoint_every=o["checkpoint_every"],
    )
    out = Path(o["out"])
    if not o["resume"]:
        run.clear(out)
    projection = run.Projection(o["gpu"], o["weights"], o["isl"], o["osl"], o["catalog"])
    report = run.run(
        o["teacher"],
        o["student"],
        o["data_path"],
        settings,
        out,
        resume=o["resume"],
        stop_after=o["stop_after"],
        eval_data=o["eval_data"],
        eval_fraction=o["eval_fraction"],
        max_length=o["max_length"],
        task=o["task"],
        projection=projection,
        progress=not o["quiet"],
        min_seconds=o["min_seconds"],
    )
    if report["finished"] and o["register"]:
        report["candidate"] = _record_distilled(o, out, report)
    if o["as_json"]:
        echo_json(report)
        return
    if not report["finished"]:
        click.echo(f"{report['note']} (checkpoints in {out / 'checkpoints'})")
        return
    t, s = report["teacher"], report["student"]
    rows = [
        ["parameters", f"{t['params']:,}", f"{s['params']:,}"],
        ["layers / hidden", f"{t['layers']} / {t['hidden']}", f"{s['layers']} / {s['hidden']}"],
        ["held-out quality", _fmt_quality(t["quality"]), _fmt_quality(s["quality"])],
        [
            "tokens/s here (forward)",
            f"{t['cpu_forward_tokens_per_s']:,.0f}",
            f"{s['cpu_forward_tokens_per_s']:,.0f}",
        ],
    ]
    if "cpu_decode_tokens_per_s" in t:
        rows.append(
            [
                "tokens/s here (decode, 1 seq)",
                f"{t['cpu_decode_tokens_per_s']:,.0f}",
                f"{s['cpu_decode_tokens_per_s']:,.0f}",
            ]
        )
    tp, sp = t["projected"], s["projected"]
    where = f"{tp['gpus']}x {tp['gpu']} {tp['weights']}, {tp['isl']}/{tp['osl']}"
    rows += [
        [f"output tokens/s ({where})", f"{tp['output_tokens_per_s']:,.0f}",
         f"{sp['output_tokens_per_s']:,.0f}"],
        ["USD per M output tokens", _usd(tp.get("usd_per_mtok")), _usd(sp.get("usd_per_mtok"))],
        ["USD per M tokens (all)", _usd(tp.get("usd_per_mtok_all_tokens")),
         _usd(sp.get("usd_per_mtok_all_tokens"))],
    ]  # fmt: skip
    title = (
        f"{report['task']}: {report['steps']} steps, loss {report['first_loss']:.4f} → "
        f"{report['last_loss']:.4f}; {report['held_out_examples']} held-out examples"
    )
    _table(["", "teacher", "student"], rows, title)
    click.echo(f"student saved to {out / 'student'}")
    _echo_candidate(report.get("candidate"))


def _record_distilled(o: dict[str, Any], out: Path, report: dict[str, Any]) -> Any:
    from tokenomy.model import candidates

    conn = _connection(o["config_path"], o["name"] is not None)
    if conn is None:
        return {"recorded": False, "why": "no tokenomy config (give --config to record it)"}
    s, t = report["student"], report["teacher"]
    shape = {k: s[k] for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "vocab")}
    name = o["name"] or f"distilled-{out.resolve().name}"
    candidates.record(
        conn,
        name,
        "distilled",
        report["task"],
        str((out / "student").resolve()),
        str(Path(o["teacher"]).resolve()),
        s["params"],
        shape,
        s["projected"],
        s["quality"],
        t["quality"],
        s["cpu_forward_tokens_per_s"],
        report,
    )
    return {"recorded": True, "name": name}


def _echo_candidate(candidate: Any) -> None:
    if not candidate:
        return
    if candidate.get("recorded"):
        click.echo(
            f"recorded as candidate {candidate['name']!r}: tokenomy plan whatif --switch "
            f"model=CURRENT:{candidate['name']} prices traffic on it"
        )
    else:
        click.echo(f"not recorded as a candidate: {candidate['why']}")


# -- quantize-eval -------------------------------------------------------------------------


@click.command("quantize-eval")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True))
@click.option("--bits", required=True, type=click.Choice(["8", "4"]))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--task", type=click.Choice(["causal-lm", "classifier"]), default=None)
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=2))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--min-seconds", default=2.0, show_default=True, type=float,
              help="Least time the forward tokens/s of each model is measured.")  # fmt: skip
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Alternating speed rounds (the median is reported).")  # fmt: skip
@_with(gpu_options)
@click.option("--name", default=None, help="Candidate name (default: FOLDER-int8 / -int4).")
@click.option("--register/--no-register", default=True, help="Record it as a candidate.")
@config_option
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def quantize_eval(**o: Any) -> None:
    """Quantize a model's weights to 8 or 4 bits on CPU and measure it against the original:
    memory, tokens/s, quality, and cost per million tokens on a GPU."""
    bits = int(o["bits"])
    _require_extra("torchao" if bits == 8 else "optimum.quanto")
    from tokenomy.model import cost, quantize

    result = quantize.evaluate(
        o["model_path"],
        bits,
        o["data_path"],
        task=o["task"],
        max_length=o["max_length"],
        batch_size=o["batch_size"],
        min_seconds=o["min_seconds"],
        rounds=o["rounds"],
    )
    original, quantized = result["original"], result["quantized"]
    spec = cost.spec(Path(o["model_path"]).name, original["params"], original["shape"])
    for variant, weights in ((original, "bf16"), (quantized, cost.PRECISION_OF_BITS[bits])):
        variant["projected"] = cost.project(
            spec, o["gpu"], weights, o["isl"], o["osl"], catalog=o["catalog"]
        )
    before, after = original["projected"], quantized["projected"]
    if before.get("usd_per_mtok") and after.get("usd_per_mtok"):
        result["ratios"]["projected_usd_per_mtok"] = round(
            after["usd_per_mtok"] / before["usd_per_mtok"], 4
        )
    if o["register"]:
        result["candidate"] = _record_quantized(o, bits, result)
    if o["as_json"]:
        echo_json(result)
        return
    r = result["ratios"]

    def row(label: str, key: str, fmt: Any) -> list[str]:
        a, b = original.get(key), quantized.get(key)
        ratio = r.get(key)
        return [label, fmt(a), fmt(b), "" if ratio is None else f"{ratio:.3f}x"]

    def number(value: Any) -> str:
        return "" if value is None else f"{value:,.0f}"

    rows = [
        row("weights in memory", "weight_bytes", _mib),
        row("process RSS for the model", "rss_bytes_model", _mib),
        ["peak process RSS", _mib(original["peak_rss_bytes"]), _mib(quantized["peak_rss_bytes"]),
         ""],
        row("tokens/s here (forward)", "cpu_forward_tokens_per_s", number),
    ]  # fmt: skip
    if "cpu_decode_tokens_per_s" in original:
        rows.append(row("tokens/s here (decode, 1 seq)", "cpu_decode_tokens_per_s", number))
    rows += [
        ["quality", _fmt_quality(original["quality"]), _fmt_quality(quantized["quality"]),
         f"{r['quality_ratio']:.4f}x" if r["quality_ratio"] is not None else ""],
        [f"USD per M output tokens ({o['gpu']})", _usd(before.get("usd_per_mtok")),
         _usd(after.get("usd_per_mtok")),
         f"{r['projected_usd_per_mtok']:.3f}x" if "projected_usd_per_mtok" in r else ""],
        [f"output tokens/s ({o['gpu']})", number(before["output_tokens_per_s"]),
         number(after["output_tokens_per_s"]), ""],
    ]  # fmt: skip
    title = f"{o['model_path']}: {quantized['method']}; {quantized['quantized_linear_layers']} "
    title += "linear layers"
    _table(["", f"original ({original['dtype']})", f"{bits}-bit", "ratio"], rows, title)
    _echo_candidate(result.get("candidate"))


def _record_quantized(o: dict[str, Any], bits: int, result: dict[str, Any]) -> Any:
    from tokenomy.model import candidates

    conn = _connection(o["config_path"], o["name"] is not None)
    if conn is None:
        return {"recorded": False, "why": "no tokenomy config (give --config to record it)"}
    original, quantized = result["original"], result["quantized"]
    folder = Path(o["model_path"]).resolve()
    name = o["name"] or f"{folder.name}-int{bits}"
    candidates.record(
        conn,
        name,
        f"quantized-int{bits}",
        original["kind"],
        str(folder),
        str(folder),
        original["params"],
        original["shape"],
        quantized["projected"],
        quantized["quality"],
        original["quality"],
        quantized["cpu_forward_tokens_per_s"],
        result,
    )
    return {"recorded": True, "name": name}


# -- candidates ----------------------------------------------------------------------------


@click.group("candidates")
def candidates_group() -> None:
    """Candidate self-hosted models recorded by distill and quantize-eval."""


@candidates_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def candidates_list(config_path: str | None, as_json: bool) -> None:
    """The candidates in the ledger, with their quality and projected cost."""
    from tokenomy import database
    from tokenomy.model import candidates

    rows = candidates.listing(database.connect(load(config_path).database))
    if as_json:
        echo_json([{k: v for k, v in r.items() if k != "report"} for r in rows])
        return
    _table(
        ["name", "source", "params", "weights", "gpu", "quality", "vs base", "USD/Mtok (all)"],
        [
            [
                r["name"],
                r["source"],
                f"{r['params']:,}",
                r["weights"],
                r["gpu"],
                _fmt_quality({"metric": r["quality_metric"], "value": r["quality"]}),
                "" if r["base_quality"] is None else f"{r['quality'] / r['base_quality']:.3f}x",
                r["usd_per_mtok_all_tokens"] or "",
            ]
            for r in rows
        ],
    )


@candidates_group.command("remove")
@click.argument("name")
@config_option
@clean_errors
def candidates_remove(name: str, config_path: str | None) -> None:
    from tokenomy import database
    from tokenomy.model import candidates

    if not candidates.remove(database.connect(load(config_path).database), name):
        raise InvalidRequest(f"no candidate {name!r}", param="name")
    click.echo(f"removed {name}")
