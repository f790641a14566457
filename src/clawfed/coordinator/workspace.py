"""A coordinator workspace on disk: config, PKI, SQL store, artifacts; init and enroll."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clawfed.coordinator.config import (
    CONFIG_NAME,
    DEFAULT_PORT,
    CoordinatorSettings,
    load_settings,
    save_settings,
    settings_from_mapping,
)
from clawfed.core import ConfigError
from clawfed.governance.db import Database, sqlite_url
from clawfed.governance.nodes import NodeRegistry
from clawfed.security.files import read_cert_key, write_cert_key
from clawfed.security.kit import Kit, write_kit
from clawfed.security.pki import (
    CertKey,
    create_ca,
    issue_admin_cert,
    issue_node_cert,
    issue_server_cert,
)


@dataclass(frozen=True)
class Workspace:
    """Paths and settings of one coordinator workspace."""

    root: Path
    settings: CoordinatorSettings

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def artifacts(self) -> Path:
        path = Path(self.settings.artifacts_dir)
        return path if path.is_absolute() else self.root / path

    def _pair(self, stem: str) -> CertKey:
        return read_cert_key(self.pki / f"{stem}.pem", self.pki / f"{stem}.key")

    def ca(self) -> CertKey:
        return self._pair("ca")

    def server(self) -> CertKey:
        return self._pair("server")

    def admin(self) -> CertKey:
        return self._pair("admin")

    def database(self) -> Database:
        return Database(self.settings.database_url)

    @property
    def address(self) -> str:
        """The address nodes and admin tools dial."""
        return f"{self.settings.advertised_host}:{self.settings.port}"


def _write_pair(pki: Path, stem: str, pair: CertKey) -> None:
    write_cert_key(pair, pki / f"{stem}.pem", pki / f"{stem}.key")


def init_workspace(
    root: Path,
    *,
    federation: str = "clawfed",
    hosts: tuple[str, ...] = (),
    port: int = DEFAULT_PORT,
    database_url: str | None = None,
    allowlist: tuple[str, ...] | None = None,
) -> Workspace:
    """Create the CA, the coordinator's and admin's certificates, the config and the store."""
    if (root / CONFIG_NAME).exists():
        raise ConfigError(f"{root} is already a clawfed workspace; refusing to overwrite it")
    root.mkdir(parents=True, exist_ok=True)
    pki = root / "pki"
    pki.mkdir(exist_ok=True)
    os.chmod(pki, 0o700)
    data: dict[str, object] = {
        "federation": federation,
        "port": port,
        "database_url": database_url or sqlite_url(root.resolve() / "clawfed.db"),
    }
    if hosts:
        data["advertised_host"] = hosts[0]
    if allowlist is not None:
        data["allowlist"] = allowlist
    settings = settings_from_mapping(data, source="clawfed init")
    ca = create_ca(f"{federation} federation CA")
    _write_pair(pki, "ca", ca)
    _write_pair(pki, "server", issue_server_cert(ca, hosts))
    _write_pair(pki, "admin", issue_admin_cert(ca, "data-admin"))
    save_settings(root, settings)
    ws = Workspace(root, settings)
    ws.artifacts.mkdir(parents=True, exist_ok=True)
    db = ws.database()
    try:
        db.upgrade()
    finally:
        db.close()
    return ws


def open_workspace(root: Path) -> Workspace:
    """Load an existing workspace."""
    return Workspace(root, load_settings(root))


def enroll_node(ws: Workspace, node_id: str, department: str, out: Path) -> Kit:
    """Issue a node certificate, register the node and write its enrollment kit."""
    if not department.strip():
        raise ConfigError("--department must not be empty")
    ca = ws.ca()
    pair = issue_node_cert(ca, node_id, department)
    db = ws.database()
    try:
        NodeRegistry(db).enroll(node_id, department, pair.serial, pair.fingerprint)
    finally:
        db.close()
    kit = Kit(
        node_id=node_id,
        department=department,
        coordinator=ws.address,
        ca_cert=ca.cert_pem.decode(),
        cert=pair.cert_pem.decode(),
        key=pair.key_pem.decode(),
    )
    write_kit(out, kit)
    return kit
