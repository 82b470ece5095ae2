"""``keys new``: the operator's Ed25519 key pair for signing bundles (docs/trust.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mtlsi_edge.cli.app import app, console

keys_app = typer.Typer(help="Signing keys for bundles.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    out: Path = typer.Option(Path("keys"), help="Folder for NAME.key and NAME.pub."),
    name: str = typer.Option("mtlsi-edge", help="File name stem of the pair."),
    overwrite: bool = typer.Option(False, help="Replace an existing pair of that name."),
) -> None:
    """Make an Ed25519 key pair: NAME.key (private, mode 0600: keep it where bundles are
    compiled) and NAME.pub (public: copy it to devices).

    Examples:
      mtlsi-edge keys new --out keys
      mtlsi-edge compile --target openvino --sign keys/mtlsi-edge.key
      mtlsi-edge check runs/compile/openvino-fp32 --trust keys/mtlsi-edge.pub
    """
    from mtlsi_edge.signing import key_id, load_public_key, new_key_pair

    priv, pub = new_key_pair(out, name, overwrite=overwrite)
    console.print(escape(f"private key: {priv} (keep it secret)"), highlight=False)
    console.print(escape(f"public key:  {pub} (key id {key_id(load_public_key(pub))})"),
                  highlight=False)
