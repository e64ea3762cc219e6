"""Flags and output shared by every ``pgc`` command, so that one flag means one thing everywhere.

- ``--json``: stdout carries exactly one JSON value (keys documented in the command's help) and
  nothing else; progress and errors stay on stderr; an error still exits 2 with one line.
- ``--quiet``: no progress bars or status messages on stderr (``--json`` implies it).
"""

from __future__ import annotations

import json

import click

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the result as one JSON value on stdout and nothing else (keys in the "
                                "description above); no progress output.")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars or status messages on stderr.")


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, sort_keys=True))


def plot_or_note(draw, *args) -> bool:
    """``draw(*args)``, or where matplotlib is missing one note line on stderr (the command still
    exits 0: a picture is never worth the work it would throw away). True when drawn."""
    from pgcompress.plotting import PlotUnavailable

    try:
        draw(*args)
    except PlotUnavailable as exc:
        click.echo(f"pgc: note: plot skipped ({exc})", err=True)
        return False
    return True


def bad_value(option: str, message: str) -> click.BadParameter:
    """A range that involves two options (one IntRange cannot say it): raise what this returns."""
    return click.BadParameter(message, ctx=click.get_current_context(silent=True), param_hint=f"'{option}'")
