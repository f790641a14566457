"""A real node process whose fit is slower than the job asks: the straggler of the tests.

``python integration_slow_node.py KIT SECONDS`` runs the real ``NodeAgent`` with the real
kit over mutual TLS; only its runner waits ``SECONDS`` before each fit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from clawfed.aggregation import ConfigValue
from clawfed.core import Weights
from clawfed.node.agent import Credentials, NodeAgent
from clawfed.node.dispatch import DispatchRunner
from clawfed.node.runner import FitAnswer
from clawfed.security.kit import load_kit


class DelayedRunner(DispatchRunner):
    """The runner of ``clawfed node``, but every fit takes ``extra_s`` seconds longer."""

    def __init__(self, extra_s: float) -> None:
        super().__init__({})
        self._extra_s = extra_s

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        """Sleep, then fit as ``clawfed node`` does."""
        time.sleep(self._extra_s)
        return super().fit(config, weights)


async def _slow_node(kit_path: Path, extra_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    kit = load_kit(kit_path)
    creds = Credentials(
        kit.node_id, kit.coordinator, kit.ca_cert.encode(), kit.cert.encode(), kit.key.encode()
    )
    await NodeAgent(creds, DelayedRunner(extra_s)).run(stop)


def main(argv: Sequence[str]) -> int:
    """``KIT SECONDS``: run a real node whose fit is ``SECONDS`` slower."""
    if len(argv) != 2:
        sys.stderr.write("usage: integration_slow_node.py KIT SECONDS\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    asyncio.run(_slow_node(Path(argv[0]), float(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
