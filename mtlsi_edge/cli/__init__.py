"""The ``mtlsi-edge`` command line (typer + rich): one module per command group.

Each command parses its options and calls one library function; errors users can cause
(:class:`~mtlsi_edge.errors.MtlsiError`, and OS errors caused by the machine) become one line
and a non-zero exit here, in :class:`_Commands`, and nowhere else.  Anything else is a bug and
keeps its traceback.

  model.py   info, export          train.py   train, eval
  data.py    data synth            deploy.py  compile, check, calibrate, quantize, deploy, prune
  run.py     demo, profile         tune.py    tune
  keys.py    keys new
  app.py     the app, error mapping
"""

from __future__ import annotations

# The command modules register themselves on ``app`` (in this order in --help).
from mtlsi_edge.cli import data, deploy, keys, model, run, train, tune  # noqa: E402, F401, I001
from mtlsi_edge.cli.app import app, console, err_console, fail, main

__all__ = ["app", "console", "err_console", "fail", "main"]
