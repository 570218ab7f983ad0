"""``tokenomy keys``: create, list and revoke virtual keys (straight to the database)."""

from __future__ import annotations

import click
import orjson

from tokenomy import database
from tokenomy.cli.common import clean_errors, config_option, echo_json, load, print_table
from tokenomy.principals import KeyStore


def _store(config_path: str | None) -> KeyStore:
    return KeyStore(database.connect(load(config_path).database))


@click.group()
def keys() -> None:
    """Manage virtual keys (tk-...)."""


@keys.command("create")
@config_option
@click.option("--user", default="")
@click.option("--team", default="")
@click.option("--department", default="")
@click.option("--project", default="")
@click.option("--environment", default="", help="dev, staging, prod, ...")
@click.option("--tenant", default="default", show_default=True)
@click.option("--name", default="")
@click.option("--tag", "tags", multiple=True, help="key=value; repeatable.")
@click.option(
    "--allow-model", "allowed", multiple=True, help="Restrict to these models; repeatable."
)
@click.option("--rpm", type=int, default=None, help="Requests per minute.")
@click.option("--tpm", type=int, default=None, help="Tokens per minute.")
@click.option(
    "--allow-critical", is_flag=True, help="May mark requests critical (skips downgrades)."
)
@click.option("--no-cache", is_flag=True, help="Opt out of the response cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@clean_errors
def create(
    config_path: str | None,
    tags: tuple[str, ...],
    allowed: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    allow_critical: bool,
    no_cache: bool,
    as_json: bool,
    **fields: str,
) -> None:
    """Create a key; the secret is printed once and stored only as a hash."""
    record, key = _store(config_path).create(
        {
            **fields,
            "tags": list(tags),
            "allowed_models": list(allowed) or None,
            "rpm": rpm,
            "tpm": tpm,
            "allow_critical": allow_critical,
            "cache_opt_out": no_cache,
        }
    )
    if as_json:
        click.echo(orjson.dumps({"id": record["id"], "key": key, "principal": record}).decode())
    else:
        click.echo(f"id:  {record['id']}\nkey: {key}")


@keys.command("list")
@config_option
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True)
@clean_errors
def list_keys(config_path: str | None, include_revoked: bool, as_json: bool) -> None:
    """List keys (never their secrets)."""
    records = _store(config_path).list(include_revoked)
    if as_json:
        echo_json(records)
        return
    from rich.table import Table

    table = Table("id", "prefix", "user", "team", "department", "project", "env", "revoked")
    for r in records:
        table.add_row(
            r["id"],
            r["prefix"],
            r["user"],
            r["team"],
            r["department"],
            r["project"],
            r["environment"],
            "yes" if r["revoked_at"] else "",
        )
    print_table(table)


@keys.command("revoke")
@config_option
@click.argument("key_id")
@clean_errors
def revoke(config_path: str | None, key_id: str) -> None:
    """Revoke a key by id; gateways stop accepting it within seconds."""
    _store(config_path).revoke(key_id)
    click.echo(f"revoked {key_id}")
