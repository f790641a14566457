"""``clawfed coordinator`` and ``clawfed node``: the two long-running processes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from clawfed.cli.common import console, find_workspace, setup_logging
from clawfed.core import ConfigError

# The coordinator and the node agent are imported where they run: the node pulls in the
# learning stack (torch), which every other ``clawfed`` command would pay for at start-up.


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _serve(workspace: Path | None) -> None:
    from clawfed.coordinator.server import Coordinator

    ws = find_workspace(workspace)
    coordinator = Coordinator(ws)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    port = await coordinator.start()
    console.print(f"coordinator [bold]{ws.settings.federation}[/] on port {port}; Ctrl-C stops")
    try:
        await stop.wait()
    finally:
        await coordinator.stop()


def coordinator(
    workspace: Annotated[Path | None, typer.Argument(help="Workspace folder.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the coordinator of the federation in WORKSPACE."""
    setup_logging(verbose)
    asyncio.run(_serve(workspace))


async def _run_node(kit_path: Path, data: list[str], mapping: list[str]) -> None:
    from clawfed.node.agent import Credentials, NodeAgent
    from clawfed.node.dispatch import DispatchRunner, parse_data_args
    from clawfed.security.kit import load_kit

    kit = load_kit(kit_path)
    datasets = parse_data_args(data, mapping)
    runner = DispatchRunner(datasets)
    agent = NodeAgent(
        Credentials(
            kit.node_id, kit.coordinator, kit.ca_cert.encode(), kit.cert.encode(), kit.key.encode()
        ),
        runner,
        datasets=runner.describe(),
    )
    stop = asyncio.Event()
    _stop_on_signals(stop)
    console.print(f"node [bold]{kit.node_id}[/] ({kit.department}) dialing {kit.coordinator}")
    await agent.run(stop)


def node(
    kit: Annotated[Path, typer.Option(help="Enrollment kit from `clawfed enroll`.")],
    data: Annotated[
        list[str] | None, typer.Option(help="Dataset as NAME=PATH (CSV or Parquet); repeatable.")
    ] = None,
    mapping: Annotated[
        list[str] | None, typer.Option(help="Harmonization file as NAME=PATH; repeatable.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a department's node: dial out to the coordinator and run what it pushes."""
    setup_logging(verbose)
    if not kit.is_file():
        raise ConfigError(f"kit file {kit} does not exist; get one from `clawfed enroll`")
    asyncio.run(_run_node(kit, data or [], mapping or []))


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(coordinator)
    app.command()(node)
