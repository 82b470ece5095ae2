"""The typer app, its one error mapping (:class:`_Commands`), consoles and ``main``."""


from __future__ import annotations

import errno
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from mtlsi_edge.errors import MtlsiError

#: OS errors that come from the user's machine (disk full, file too large, permissions, a
#: read-only or missing place), not from our code: reported as one line naming the path.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                      errno.EROFS, errno.ENAMETOOLONG}

console = Console()
err_console = Console(stderr=True)


def _print_error(msg: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(' '.join(str(msg).split()))}",
                      highlight=False, soft_wrap=True, emoji=False)


def print_path(label: str, path, rest: str = "") -> None:
    """``label: PATH`` with the path in bold — escaped, so a path holding ``[...]`` prints as
    it is (Rich would read it as markup) — and plain ``rest`` after it."""
    console.print(f"{escape(label)}: [bold]{escape(str(path))}[/]{escape(rest)}",
                  highlight=False, soft_wrap=True)


def fail(msg: str, code: int = 2) -> None:
    """One line on stderr and exit ``code``; ``msg`` is user text, never markup.  For
    conditions only the CLI knows (option combinations); library checks raise MtlsiError."""
    _print_error(msg)
    raise typer.Exit(code)


#: Commands of the build half (model, data, training, export, compile, quantise, tune): in a
#: runtime-only install they say which extra to install, in one line, and exit 2.  ``--help``
#: works for every command in every install.
BUILD_COMMANDS = frozenset({"info", "export", "data", "train", "eval", "compile", "calibrate",
                            "quantize", "deploy", "prune", "tune"})


def require_build_half(what: str) -> None:
    """Exit 2 with one line when the build half (PyTorch, timm) is not installed here."""
    from mtlsi_edge.backends import BUILD_EXTRA, build_half_installed

    if not build_half_installed():
        fail(f"{what} needs the build half (PyTorch, timm, NNCF), which this runtime-only "
             f"install lacks: pip install 'mtlsi-edge[{BUILD_EXTRA}]'")


class _Commands(TyperGroup):
    """Every command runs here: user errors (:class:`MtlsiError`, and OS errors caused by the
    machine) become one line and their exit code; everything else keeps its traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """Usage errors (a bad option value, a missing argument) as one line too, instead of
        click's boxed multi-line panel."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(1)
        except typer.TyperException as e:  # typer's (vendored) click usage errors
            if type(e).__name__ == "NoArgsIsHelpError":
                console.print(e.ctx.get_help(), highlight=False)
                sys.exit(e.exit_code)
            if not hasattr(e, "format_message"):
                raise
            ctx = getattr(e, "ctx", None)
            _print_error(e.format_message() + (f" (see: {ctx.command_path} --help)" if ctx
                                               else ""))
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if name in BUILD_COMMANDS and not any(a in ("--help", "-h") for a in rest):
            require_build_half(f"mtlsi-edge {name}")
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MtlsiError as e:
            fail(str(e), code=e.exit_code)
        except OSError as e:
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            where = e.filename if e.filename is not None else ""
            fail(f"{where}: {e.strerror}" if where else (e.strerror or str(e)))


app = typer.Typer(
    cls=_Commands,
    name="mtlsi-edge",
    help="MTLSI-Net multi-task dense prediction: train, quantise, compile and run on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:  # pragma: no cover - console script entry
    """The ``mtlsi-edge`` console script."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
