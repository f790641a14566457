"""Entry point of the ``clawfed`` command: builds the Typer app and shows errors plainly."""

from __future__ import annotations

import sys

import typer

from clawfed.cli.common import err_console
from clawfed.core import ClawfedError

#: The long-running processes. ``clawfed coordinator`` and ``clawfed node`` start with only
#: their own commands loaded, so they never import what the other commands need (chat,
#: pandas, matplotlib, fastapi…): every imported module stays resident for the process's life.
RUN_COMMANDS = frozenset({"coordinator", "node"})


def _empty_app() -> typer.Typer:
    return typer.Typer(
        name="clawfed",
        help="Federated learning for the departments of one enterprise.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


def build_app() -> typer.Typer:
    """The ``clawfed`` app with every command (imports every command module)."""
    from clawfed.cli import (
        audit_cmds,
        chat_cmds,
        contrib_cmds,
        demo,
        federation_cmds,
        job_cmds,
        models_cmds,
        run_cmds,
        users_cmds,
    )

    app = _empty_app()
    federation_cmds.register(app)
    run_cmds.register(app)
    users_cmds.register(app)
    demo.register(app)
    contrib_cmds.register(app)
    app.add_typer(job_cmds.app, name="job")
    app.add_typer(chat_cmds.app, name="chat")
    app.add_typer(models_cmds.app, name="models")
    app.add_typer(audit_cmds.app, name="audit")
    return app


def build_run_app() -> typer.Typer:
    """The app with only ``coordinator`` and ``node`` (see ``RUN_COMMANDS``)."""
    from clawfed.cli import run_cmds

    app = _empty_app()
    run_cmds.register(app)
    return app


_APP: typer.Typer | None = None


def __getattr__(name: str) -> typer.Typer:
    """``app``, the full CLI, built on first use (``from clawfed.cli.main import app``)."""
    global _APP
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _APP is None:
        _APP = build_app()
    return _APP


def _app_for(argv: list[str]) -> typer.Typer:
    if argv and argv[0] in RUN_COMMANDS:
        return build_run_app()
    app: typer.Typer = __getattr__("app")
    return app


def main() -> None:
    """Run the CLI; a ClawfedError is a user-facing message and exit code 2, no traceback."""
    try:
        code = _app_for(sys.argv[1:])(standalone_mode=False)
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
