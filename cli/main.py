"""``pgc``: the click group, and the one place errors become a line on stderr and an exit code.

Exit codes: 0 ok; 2 a problem the user can fix (bad input file, option, budget miss), printed as
one line; 1 an internal error (one line; ``--debug`` or PGC_DEBUG=1 shows the traceback).
pgcompress's own warnings (``PgcWarning``) are one ``pgc: warning: ...`` line each too.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

import click

from pgcompress import __version__
from pgcompress.errors import PgcError, PgcWarning


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pgcompress")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """pgcompress: pack Parameter Golf checkpoints under the 16 MB budget and score them."""


def _commands():
    from pgcompress.cli import demo_cmd, eval_cmd, inspect_cmd, methods_cmd, pack_cmd, unpack_cmd
    from pgcompress.cli import decoder_cmd, sweep_cmd, wrap_cmd

    return [pack_cmd.pack, inspect_cmd.inspect, unpack_cmd.unpack, methods_cmd.methods, eval_cmd.eval_, eval_cmd.compare, demo_cmd.demo,
            decoder_cmd.decoder, wrap_cmd.wrap, sweep_cmd.sweep]


COMMANDS = _commands()
for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PGC_DEBUG") == "1"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning(warnings.showwarning)
            cli.main(args=argv, prog_name="pgc", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # usage errors too: one line, the hint to -h included
        hint = f" (see 'pgc {exc.ctx.info_name} -h')" if getattr(exc, "ctx", None) is not None else ""
        _fail(debug, f"pgc: error: {exc.format_message()}{hint}", 2)
    except click.exceptions.Abort:
        click.echo("pgc: aborted", err=True)
        sys.exit(130)
    except PgcError as exc:
        _fail(debug, f"pgc: error: {exc}", 2)
    except OSError as exc:  # missing, unreadable, full disk, I/O error: the user's environment, not a bug
        _fail(debug, f"pgc: error: {exc.filename or 'file'}: {exc.strerror or exc}", 2)
    except KeyboardInterrupt:
        click.echo("pgc: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line unless asked for more
        _fail(debug, f"pgc: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)


def _show_warning(default):
    """``warnings.showwarning`` that prints a PgcWarning as one line; other warnings as before."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, PgcWarning):
            click.echo(f"pgc: warning: {' '.join(str(message).splitlines())}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _fail(debug: bool, line: str, code: int) -> None:
    if debug:
        traceback.print_exc()
    click.echo(line.splitlines()[0] if line.strip() else line, err=True)
    sys.exit(code)
