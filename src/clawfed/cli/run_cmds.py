"""``clawfed coordinator`` and ``clawfed node``: the two long-running processes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from clawfed.cli.common import console, find_workspace, setup_logging
from clawfed.core import ConfigError
from clawfed.core.buffers import tune_malloc

# The coordinator and the node agent are imported where they run: the node pulls in the
# learning stack (torch), which every other ``clawfed`` command would pay for at start-up.


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _serve(workspace: Path | None, web: tuple[str, int] | None) -> None:
    from clawfed.coordinator.server import Coordinator

    ws = find_workspace(workspace)
    coordinator = Coordinator(ws, web=web)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    port = await coordinator.start()
    console.print(f"coordinator [bold]{ws.settings.federation}[/] on port {port}; Ctrl-C stops")
    if coordinator.web is not None:
        console.print(f"dashboard and REST API at {coordinator.web.url}", highlight=False)
    try:
        await stop.wait()
    finally:
        await coordinator.stop()


def coordinator(
    workspace: Annotated[Path | None, typer.Argument(help="Workspace folder.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    web_port: Annotated[
        int | None,
        typer.Option(
            help="Serve the dashboard and REST API on this port (0: any free port).",
            min=0,
            max=65535,
        ),
    ] = None,
    web_host: Annotated[str, typer.Option(help="Address of the dashboard.")] = "127.0.0.1",
) -> None:
    """Run the coordinator of the federation in WORKSPACE."""
    setup_logging(verbose)
    tune_malloc()
    asyncio.run(_serve(workspace, None if web_port is None else (web_host, web_port)))


async def _run_node(
    kit_path: Path, data: list[str], mapping: list[str], policy_path: Path | None
) -> None:
    from clawfed.node.agent import Credentials, NodeAgent
    from clawfed.node.dispatch import DispatchRunner, parse_data_args
    from clawfed.node.local_policy import load_node_policy
    from clawfed.security.kit import load_kit

    kit = load_kit(kit_path)
    datasets = parse_data_args(data, mapping)
    policy = None if policy_path is None else load_node_policy(policy_path, kit.department)
    runner = DispatchRunner(datasets, policy=policy)
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
    policy: Annotated[
        Path | None,
        typer.Option(help="Local policy file (YAML): tasks outside it are refused."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a department's node: dial out to the coordinator and run what it pushes."""
    setup_logging(verbose)
    if not kit.is_file():
        raise ConfigError(f"kit file {kit} does not exist; get one from `clawfed enroll`")
    tune_malloc()
    asyncio.run(_run_node(kit, data or [], mapping or [], policy))


def predict_serve(
    model: Annotated[Path, typer.Option(help="Text model file (safetensors) to serve.")],
    job: Annotated[
        Path | None,
        typer.Option(help="Job file that trained it (needed for a bare registry version file)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free).", min=0)] = 8765,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve a department's intent model locally: POST /predict redacts, then classifies."""
    from clawfed.node.predict_server import serve_until_stopped

    setup_logging(verbose)
    if not model.is_file():
        raise ConfigError(f"model file {model} does not exist")
    serve_until_stopped(
        model, job, port, lambda url: console.print(f"predicting at {url}/predict", highlight=False)
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(coordinator)
    app.command()(node)
    app.command("predict-serve")(predict_serve)
