"""``tokenomy router``: train, evaluate and simulate the learned router (issue 5).

Prices are blended $ per million tokens and stand for the cost of one call of each model
(the prompts of one data set have similar lengths for both). The defaults are the prices
RouteLLM's paper used for its MMLU results: GPT-4 Turbo (gpt-4-1106-preview) $24.7 and
Mixtral-8x7B-Instruct $0.24.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tokenomy.cli.common import echo_json, print_table

_PRICE_HELP = "Blended $ per million tokens of the {} model (default: {} for {})."


def _price_options(func: Any) -> Any:
    from tokenomy.routing.learned.metrics import DEFAULT_STRONG_PRICE, DEFAULT_WEAK_PRICE

    func = click.option(
        "--strong-price",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_STRONG_PRICE,
        show_default=True,
        help=_PRICE_HELP.format("strong", DEFAULT_STRONG_PRICE, "GPT-4 Turbo"),
    )(func)
    return click.option(
        "--weak-price",
        type=click.FloatRange(min=0),
        default=DEFAULT_WEAK_PRICE,
        show_default=True,
        help=_PRICE_HELP.format("weak", DEFAULT_WEAK_PRICE, "Mixtral-8x7B"),
    )(func)


def _model_name_options(func: Any) -> Any:
    func = click.option("--strong-model", default=None, help="Strong model's name in 'winner'.")(
        func
    )
    return click.option("--weak-model", default=None, help="Weak model's name in 'winner'.")(func)


def _read(path: str, strong_model: str | None, weak_model: str | None) -> Any:
    from tokenomy.routing.learned.data import read
    from tokenomy.routing.learned.router import RouterError

    try:
        return read(path, strong_model=strong_model, weak_model=weak_model)
    except RouterError as exc:
        raise click.UsageError(str(exc)) from None


def _load(where: str) -> Any:
    from tokenomy.embeddings import EmbeddingsUnavailable
    from tokenomy.routing.learned.router import LearnedRouter, RouterError

    try:
        return LearnedRouter.load(where)
    except RouterError as exc:
        raise click.UsageError(str(exc)) from None
    except EmbeddingsUnavailable as exc:
        raise click.ClickException(str(exc)) from None


def _scores(router: Any, data: Any) -> Any:
    from tokenomy.embeddings import EmbeddingsUnavailable

    try:
        return router.score_many(data.prompts)
    except EmbeddingsUnavailable as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def router() -> None:
    """Learned routing: which prompts need the strong model (RouteLLM metrics)."""


@router.command()
@click.option(
    "--data", "data_path", required=True, type=click.Path(dir_okay=False), help="Training CSV."
)
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False), help="Router folder to write."
)
@click.option(
    "--model-family",
    default="default",
    show_default=True,
    help="default (= lgbm, the best measured: see benchmarks/router_quality.py), "
    "lgbm+logreg, lgbm-3targets, lgbm-2targets, lgbm-rich, logreg+surface, logreg or mlp.",
)
@click.option("--cv-repeats", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option(
    "--backend",
    type=click.Choice(["onnx-int8", "onnx", "torch"]),
    default="onnx-int8",
    show_default=True,
    help="Embedding backend the router will use: onnx-int8 (the default router's: decisions "
    "in ~3-5 ms), onnx (the torch model's exact vectors, ~2x slower) or torch.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(8, 512),
    default=128,
    show_default=True,
    help="Tokens read per text (longer prompts are truncated: bounds the decision time).",
)
@click.option(
    "--embedding-cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="An .npz file keeping the training prompts' embeddings between runs (keyed by the "
    "texts and the embedding settings; recomputed when they differ).",
)
@_model_name_options
@click.option("--json", "as_json", is_flag=True, help="Print the cross-validation figures as JSON.")
def train(
    data_path: str,
    out: str,
    model_family: str,
    cv_repeats: int,
    backend: str,
    max_tokens: int,
    embedding_cache: str | None,
    strong_model: str | None,
    weak_model: str | None,
    as_json: bool,
) -> None:
    """Train a router on per-prompt outcomes or pairwise preferences.

    Outcome CSV: prompt, weak_correct, strong_correct (True/False); optional subject (or
    group) column, used for grouped cross-validation. Pairwise CSV: prompt, winner
    (strong / weak / tie / tie (bothbad), or a model's name). Other columns are ignored.
    """
    from tokenomy.embeddings import DEFAULT_MODEL, shared_embedder
    from tokenomy.routing.learned import training
    from tokenomy.routing.learned.router import file_sha256

    data = _read(data_path, strong_model, weak_model)
    spec = training.spec_for(model_family)
    if spec is None:
        raise click.UsageError(
            f"unknown --model-family {model_family!r}; one of {', '.join(training.family_names())}"
        )
    if len(data) < 10:
        raise click.UsageError(f"{data_path}: {len(data)} rows; a router needs at least 10")
    if (
        data.weak_correct.mean() == data.strong_correct.mean()
        and (data.weak_correct == data.strong_correct).all()
    ):
        raise click.UsageError(f"{data_path}: the two models never differ; nothing to learn")
    embedder = shared_embedder(DEFAULT_MODEL, backend=backend, max_tokens=max_tokens)
    provenance = {
        "data_file": Path(data_path).name,
        "data_sha256": file_sha256(data_path),
        "data_kind": data.kind,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    embedding = {"model": DEFAULT_MODEL, "backend": backend, "max_tokens": max_tokens}
    if not as_json:
        click.echo(
            f"embedding {len(data)} prompts ({backend}) and training {spec.name} ...", err=True
        )
    trained, cv = training.train_router(
        data.prompts,
        data.weak_correct,
        data.strong_correct,
        data.groups,
        spec,
        _cached(embedder.encode, embedding_cache, embedding),
        embedding,
        provenance,
        cv_repeats=cv_repeats,
    )
    folder = trained.save(out)
    summary = cv.summary() if cv is not None else None
    if as_json:
        echo_json({"router": str(folder), "n": len(data), "spec": spec.name, "cv": summary})
        return
    click.echo(f"router written to {folder} ({len(data)} rows, {spec.name})")
    if summary is None:
        click.echo("too few rows for cross-validation")
        return
    method = "subject-grouped" if cv is not None and cv.grouped else "row (no subject column)"
    click.echo(f"{method} cross-validation, {summary['folds']} folds (mean ± sd over folds):")
    for key in ("apgr", "cpt50", "cpt80", "strong_share_at_95"):
        click.echo(f"  {key:20s} {_fmt(summary[key])} ± {_fmt(summary[key + '_sd'])}")
    free_cv = trained.meta.get("cv_free")
    if free_cv:
        fs = free_cv["summary"]
        click.echo(
            f"  free-form model (the questions without their options): APGR "
            f"{_fmt(fs['apgr'])} ± {_fmt(fs['apgr_sd'])}, strong share at 95% "
            f"{_fmt(fs['strong_share_at_95'])} ± {_fmt(fs['strong_share_at_95_sd'])}"
        )
    click.echo(
        f"pooled out-of-fold: APGR {_fmt(summary['pooled_apgr'])}, CPT(50%) "
        f"{_fmt(summary['pooled_cpt50'])}, CPT(80%) {_fmt(summary['pooled_cpt80'])}, strong share "
        f"for 95% quality {_fmt(trained.share_for_quality(0.95))}"
    )


@router.command(name="eval")
@click.option("--router", "where", required=True, help="Router folder, or 'default'.")
@click.option(
    "--data", "data_path", required=True, type=click.Path(dir_okay=False), help="CSV to score."
)
@_price_options
@_model_name_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def eval_command(
    where: str,
    data_path: str,
    weak_price: float,
    strong_price: float,
    strong_model: str | None,
    weak_model: str | None,
    as_json: bool,
) -> None:
    """RouteLLM metrics of a router on a data file, beside the random router and the oracle.

    apgr: average performance gap recovered; cpt50/cpt80: strong-call share needed for 50%
    / 80% of the gap; strong_share_at_95: strong-call share needed for 95% of the strong
    model's quality; cost_saving_at_95: the bill saved there against all-strong.
    """
    from tokenomy.routing.learned import metrics
    from tokenomy.routing.learned.router import file_sha256

    data = _read(data_path, strong_model, weak_model)
    trained = _load(where)
    scores = _scores(trained, data)
    result = metrics.report(
        scores, data.weak_correct, data.strong_correct, weak_price, strong_price
    )
    trained_on = trained.meta.get("training", {}).get("data_sha256")
    seen = trained.seen_in_training(data.prompts)
    result["seen_in_training"] = seen
    result["in_sample"] = trained_on == file_sha256(data_path) or seen >= 0.99
    result["router"] = where
    if as_json:
        echo_json(result)
        return
    from rich.table import Table

    table = Table(title=f"{where} on {Path(data_path).name} ({result['n']} prompts)")
    table.add_column("router")
    for col in ("APGR", "CPT(50%)", "CPT(80%)", "strong share @95%", "saving @95%"):
        table.add_column(col, justify="right")
    for name, row in (
        ("learned", result),
        ("random", result["random"]),
        ("oracle", result["oracle"]),
    ):
        table.add_row(
            name,
            _fmt(row["apgr"]),
            _fmt(row["cpt50"]),
            _fmt(row["cpt80"]),
            _fmt(row["strong_share_at_95"]),
            _pct(row["cost_saving_at_95"]),
        )
    print_table(table)
    click.echo(
        f"quality: weak {result['quality_weak']:.3f}, strong {result['quality_strong']:.3f}; "
        f"prices ${weak_price}/${strong_price} per Mtok"
    )
    if seen > 0:
        click.echo(
            f"note: the router was trained on {seen:.0%} of these prompts; "
            "figures on them are in-sample, not a measure of quality"
        )


@router.command()
@click.option("--router", "where", required=True, help="Router folder, or 'default'.")
@click.option(
    "--data", "data_path", required=True, type=click.Path(dir_okay=False), help="CSV to score."
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="PNG to write."
)
@click.option("--points", type=click.IntRange(2, 101), default=11, show_default=True)
@click.option(
    "--tokens-per-request",
    type=click.FloatRange(min=0, min_open=True),
    default=1000.0,
    show_default=True,
    help="Tokens per request for the cost column.",
)
@_price_options
@_model_name_options
@click.option("--json", "as_json", is_flag=True, help="The curve as JSON.")
def simulate(
    where: str,
    data_path: str,
    plot_path: str | None,
    points: int,
    tokens_per_request: float,
    weak_price: float,
    strong_price: float,
    strong_model: str | None,
    weak_model: str | None,
    as_json: bool,
) -> None:
    """What-if: quality and cost at each threshold, to choose an operating point."""
    import numpy as np

    from tokenomy.routing.learned import metrics

    data = _read(data_path, strong_model, weak_model)
    trained = _load(where)
    scores = _scores(trained, data)
    c = metrics.curve(scores, data.weak_correct, data.strong_correct)
    rows = []
    per_1k = tokens_per_request * 1000 / 1e6
    all_strong = strong_price * per_1k
    for share in np.linspace(0, 1, points).tolist():
        quality = float(np.interp(share, c.share, c.quality))
        pgr = float(np.interp(share, c.share, c.pgr)) if not np.isnan(c.pgr).any() else math.nan
        cost = float((share * strong_price + (1 - share) * weak_price) * per_1k)
        threshold = trained.threshold_for_share(float(share))
        rows.append(
            {
                "strong_share": round(float(share), 4),
                "threshold": None if math.isinf(threshold) else threshold,
                "quality": quality,
                "pgr": None if math.isnan(pgr) else pgr,
                "cost_per_1k_requests": cost,
                "saving": 1 - cost / all_strong,
            }
        )
    seen = trained.seen_in_training(data.prompts)
    title = Path(data_path).name + (f" ({seen:.0%} in-sample)" if seen > 0 else "")
    if plot_path:
        _plot(c, plot_path, where, title, weak_price, strong_price)
    if as_json:
        echo_json(
            {
                "n": len(data),
                "q_weak": c.q_weak,
                "q_strong": c.q_strong,
                "seen_in_training": seen,
                "curve": rows,
            }
        )
        return
    from rich.table import Table

    table = Table(title=f"{where} on {Path(data_path).name}: {len(data)} prompts")
    for col in ("strong share", "threshold", "quality", "PGR", "$ / 1k requests", "saving"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['strong_share']:.0%}",
            "-" if r["threshold"] is None else f"{r['threshold']:.3f}",
            f"{r['quality']:.3f}",
            _fmt(r["pgr"]),
            f"{r['cost_per_1k_requests']:.2f}",
            _pct(r["saving"]),
        )
    print_table(table)
    click.echo(
        f"weak {c.q_weak:.3f}, strong {c.q_strong:.3f}; {tokens_per_request:g} tokens/request at "
        f"${weak_price}/${strong_price} per Mtok; thresholds are percentiles of the router's "
        "training scores"
    )
    if seen > 0:
        click.echo(f"note: the router was trained on {seen:.0%} of these prompts (in-sample)")
    if plot_path:
        click.echo(f"plot written to {plot_path}")


def _cached(encode: Any, path: str | None, settings: dict[str, Any]) -> Any:
    """``encode`` through an .npz file of text fingerprints and vectors: texts seen before
    (with the same embedding settings) are not embedded again."""
    if path is None:
        return encode
    import hashlib

    import numpy as np

    if not path.endswith(".npz"):
        path += ".npz"  # numpy adds it on save
    salt = repr(sorted(settings.items())).encode()

    def fingerprint(text: str) -> int:
        data = salt + b"\0" + text.encode("utf-8", "surrogatepass")
        return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest())

    def cached_encode(texts: list[str]) -> Any:
        keys = np.array([fingerprint(t) for t in texts], dtype=np.uint64)
        known_keys = np.zeros(0, dtype=np.uint64)
        known: Any = None
        try:
            with np.load(path, allow_pickle=False) as npz:
                known_keys, known = npz["keys"], npz["vectors"]
        except (OSError, KeyError, ValueError):
            pass
        index = {int(k): i for i, k in enumerate(known_keys)}
        new_keys: list[int] = []
        new_texts: list[str] = []
        for text, key in zip(texts, keys.tolist(), strict=True):
            if key not in index:
                index[key] = len(known_keys) + len(new_keys)
                new_keys.append(key)
                new_texts.append(text)
        if new_texts:
            fresh = encode(new_texts)
            known = fresh if known is None else np.vstack([known, fresh])
            known_keys = np.concatenate([known_keys, np.array(new_keys, dtype=np.uint64)])
            np.savez(path, keys=known_keys, vectors=known)
        if known is None:
            return encode(texts)
        return known[[index[int(k)] for k in keys]]

    return cached_encode


def _plot(
    c: Any, path: str, where: str, data_name: str, weak_price: float, strong_price: float
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise click.ClickException(
            "--plot needs matplotlib (pip install 'tokenomy[embeddings]')"
        ) from None

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.plot(c.share * 100, c.quality, label=f"learned router ({where})", color="#1f77b4")
    ax.plot([0, 100], [c.q_weak, c.q_strong], "--", label="random router", color="#7f7f7f")
    ax.axhline(c.q_strong, color="#d62728", lw=0.8, label=f"strong only ({c.q_strong:.3f})")
    ax.axhline(c.q_weak, color="#2ca02c", lw=0.8, label=f"weak only ({c.q_weak:.3f})")
    ax.axhline(0.95 * c.q_strong, color="#ff7f0e", lw=0.8, ls=":", label="95% of strong quality")
    ax.set_xlabel("strong-model calls (%)")
    ax.set_ylabel("quality (share of prompts answered well)")
    keep = 1 - weak_price / strong_price  # saving = (1 - strong share) * keep

    def to_saving(share_pct: Any) -> Any:
        return (100 - share_pct) * keep

    def to_share(saving_pct: Any) -> Any:
        return 100 - saving_pct / keep

    top = ax.secondary_xaxis("top", functions=(to_saving, to_share))
    top.set_xlabel("saving vs all-strong (%)")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Cost/quality curve on {data_name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}"


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1%}"
