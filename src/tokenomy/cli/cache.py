"""``tokenomy cache``: measure the semantic cache's decisions on real pairs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from tokenomy.cli.common import echo_json, print_table

if TYPE_CHECKING:
    from tokenomy.cache.verifier import Verifier


@click.group()
def cache() -> None:
    """The response cache: evaluate the semantic cache on labelled or paraphrase pairs."""


def _fmt(value: Any, percent: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else str(value)


@cache.command("eval")
@click.option(
    "--pairs",
    "pairs_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="JSON list of {origin, similar} (GPTCache protocol) or JSON/JSONL of "
    "{text_a, text_b, label} (decision protocol).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(-1.0, 1.0),
    default=None,
    help="Cosine a candidate needs (default: the engine's).",
)
@click.option("--no-verifier", is_flag=True, help="Cosine alone (plus the margin): unsafe.")
@click.option(
    "--verifier",
    "verifier_kind",
    default="default",
    show_default=True,
    help="default, trees, logistic, cross-encoder, a verifier JSON file, or the folder of "
    "a cross-encoder artifact.",
)
@click.option(
    "--margin",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="No hit when another entry is this close to the nearest (default: the engine's).",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Verifier score a hit needs (default: the shipped verifier's).",
)
@click.option(
    "--cv",
    type=click.IntRange(2, 20),
    default=None,
    help="Cross-validate the verifier on this file: K grouped folds, each decision made by "
    "a verifier of the same recipe trained without its fold's texts (on the other folds "
    "and the verifier's other training files, found beside FILE).",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N pairs.")
@click.option("--latency-samples", type=click.IntRange(0), default=200, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    default="torch",
    show_default=True,
    help="Embedding backend (onnx: same vectors, faster lookups).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def eval_command(
    pairs_path: str,
    threshold: float | None,
    no_verifier: bool,
    verifier_kind: str,
    margin: float | None,
    min_score: float | None,
    cv: int | None,
    limit: int | None,
    latency_samples: int,
    backend: str,
    as_json: bool,
) -> None:
    """Hit rate, false hits, precision, latency and a threshold sweep on FILE's pairs."""
    from tokenomy.cache.evaluate import PairsError, evaluate, load_pairs
    from tokenomy.cache.semantic import DEFAULT_MARGIN, DEFAULT_THRESHOLD
    from tokenomy.embeddings import EmbeddingsUnavailable, shared_embedder

    try:
        pairs = load_pairs(pairs_path)
    except PairsError as exc:
        raise click.BadParameter(str(exc), param_hint="--pairs") from None
    if limit is not None:
        pairs = pairs.head(limit)
    if cv is not None and no_verifier:
        raise click.UsageError("--cv cross-validates the verifier; it cannot go with --no-verifier")
    if (
        cv is not None
        and pairs.labels is not None
        and min(sum(pairs.labels), len(pairs) - sum(pairs.labels)) < cv
    ):
        raise click.BadParameter(f"needs at least {cv} pairs of each label", param_hint="--cv")
    if cv is not None and len(pairs) < cv:
        raise click.BadParameter(f"needs at least {cv} pairs", param_hint="--cv")
    cross_validated, cv_folds = False, cv
    verifier = None if no_verifier else _verifier(verifier_kind)
    if cv is not None and verifier is not None:
        from tokenomy.cache.cross_encoder import CrossEncoderVerifier

        if isinstance(verifier, CrossEncoderVerifier):
            verifier = _out_of_fold(verifier, verifier_kind, pairs, cv)
            cv = None  # its cross-validation was run at training time; replayed here
            cross_validated = True
    if verifier is not None and min_score is not None:
        verifier = verifier.with_options(min_score=min_score)
    try:
        embedder = shared_embedder() if backend == "torch" else shared_embedder(backend=backend)
    except EmbeddingsUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    try:
        report = evaluate(
            pairs,
            embedder,
            threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
            verifier=verifier,
            cv=cv,
            margin=DEFAULT_MARGIN if margin is None else margin,
            latency_samples=latency_samples,
        )
    except PairsError as exc:
        raise click.UsageError(str(exc)) from None
    if cross_validated:
        report["cv"], report["in_sample"] = cv_folds, False
    if as_json:
        echo_json(report)
        return
    _print_report(report)


def _verifier(kind: str) -> Verifier:
    from tokenomy.cache.cross_encoder import CrossEncoderError, CrossEncoderVerifier
    from tokenomy.cache.verifier import KINDS, Verifier, default_verifier, verifier_of

    try:
        if kind == "default":
            return default_verifier()
        if kind in KINDS:
            return verifier_of(kind)
        if kind.endswith(".json"):
            return Verifier.load(kind)
        return CrossEncoderVerifier.load(kind)
    except (CrossEncoderError, OSError, ValueError, KeyError) as exc:
        raise click.BadParameter(str(exc), param_hint="--verifier") from None


def _out_of_fold(verifier: Any, kind: str, pairs: Any, cv: int) -> Verifier:
    """The cross-encoder's recorded out-of-fold scores (it is too slow to retrain here)."""
    from pathlib import Path

    from tokenomy.cache.cross_encoder import CrossEncoderError, OutOfFoldVerifier, shipped_folder

    folder = shipped_folder() if kind in ("default", "cross-encoder") else Path(kind)
    try:
        return OutOfFoldVerifier.of(verifier, folder, pairs.a, pairs.b, pairs.sha256, cv)
    except CrossEncoderError as exc:
        raise click.BadParameter(str(exc), param_hint="--cv") from None


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    how = "cosine alone" if report["verifier"] is None else f"verifier v{report['verifier']}"
    if report["cv"]:
        how += f", {report['cv']}-fold cross-validated"
    click.echo(
        f"{report['file']}: {report['protocol']} protocol, {report['n']} pairs "
        f"({report['duplicates']} duplicates), threshold {report['threshold']}, "
        f"margin {report['margin']}, {how}"
    )
    if report["in_sample"]:
        click.echo(
            "note: the shipped verifier was trained on this file, so these figures are "
            "in-sample; use --cv 5 for honest ones"
        )
    summary = Table("hit rate", "false-hit rate", "precision", "hits", "wrong hits", "p50", "p99")
    summary.add_row(
        _fmt(report["hit_rate"]),
        _fmt(report["false_hit_rate"]),
        _fmt(report["precision"]),
        str(report["hits"]),
        str(report["wrong_hits"]),
        f"{report['lookup_p50_ms']} ms",
        f"{report['lookup_p99_ms']} ms",
    )
    print_table(summary)
    for key, column in (("sweep", "threshold"), ("score_sweep", "min_score")):
        if key not in report:
            continue
        table = Table(column, "hit rate", "false-hit rate", "precision", "hits", "wrong hits")
        for row in report[key]:
            table.add_row(
                str(row[column]),
                _fmt(row["hit_rate"]),
                _fmt(row["false_hit_rate"]),
                _fmt(row["precision"]),
                str(row["hits"]),
                str(row["wrong_hits"]),
            )
        print_table(table)
