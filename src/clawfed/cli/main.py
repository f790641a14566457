"""Entry point of the ``clawfed`` command: builds the Typer app and shows errors plainly."""

from __future__ import annotations

import sys

import typer

from clawfed.cli import (
    audit_cmds,
    chat_cmds,
    demo,
    federation_cmds,
    job_cmds,
    models_cmds,
    run_cmds,
)
from clawfed.cli.common import err_console
from clawfed.core import ClawfedError

app = typer.Typer(
    name="clawfed",
    help="Federated learning for the departments of one enterprise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
federation_cmds.register(app)
run_cmds.register(app)
demo.register(app)
app.add_typer(job_cmds.app, name="job")
app.add_typer(chat_cmds.app, name="chat")
app.add_typer(models_cmds.app, name="models")
app.add_typer(audit_cmds.app, name="audit")


def main() -> None:
    """Run the CLI; a ClawfedError is a user-facing message and exit code 2, no traceback."""
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except ClawfedError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive as ClickException subclasses
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
