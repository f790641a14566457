"""The coordinator process: TLS gate, gRPC services, node sessions, job runners."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from clawfed import PROTOCOL_VERSION
from clawfed.coordinator.admin import AdminService
from clawfed.coordinator.config import CONFIG_NAME
from clawfed.coordinator.jobs import JobRunner
from clawfed.coordinator.session_hub import SessionHub, check_hello, version_goodbye
from clawfed.coordinator.sessions import (
    SESSION_SERVER_OPTIONS,
    NodeSession,
    deserialize_node_message,
)
from clawfed.coordinator.workspace import Workspace
from clawfed.core import NodeInfo, NotFoundError, RefusalReason
from clawfed.governance.audit import AuditLog
from clawfed.governance.nodes import NodeRegistry
from clawfed.security.allowlist import IpAllowlist
from clawfed.security.gate import Refusal, TlsGate
from clawfed.security.pki import PeerIdentity, Role
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire._proto import federation_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from clawfed.api.serve import WebServer
    from clawfed.chat.service import ChatService

log = logging.getLogger("clawfed.coordinator")

_HELLO_TIMEOUT_S = 30.0
#: How long a revoked node gets to read its goodbye and hang up before it is cut off.
_GOODBYE_GRACE_S = 2.0


def _serialize(message: pb.CoordinatorMessage | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


class Coordinator:
    """Owns every long-lived part of a running coordinator."""

    def __init__(self, workspace: Workspace, *, web: tuple[str, int] | None = None) -> None:
        self.ws = workspace
        #: (host, port) of the REST API and dashboard; None serves neither (port 0: any).
        self.web_address = web
        self.web: WebServer | None = None
        s = workspace.settings
        self.db = workspace.database()
        self.db.upgrade()
        self.chat: ChatService | None = None
        if s.chat:
            from clawfed.chat.service import ChatService, load_chat_config

            config = load_chat_config(s.chat, source=f"{workspace.root / CONFIG_NAME}: chat")
            self.chat = ChatService(config, self.db)
        self.nodes = NodeRegistry(self.db)
        self.audit = AuditLog(self.db)
        self.hub = SessionHub(
            chunk_size=s.chunk_size,
            max_update_bytes=s.max_update_bytes,
            max_inflight_updates=s.max_inflight_updates,
            on_change=self._on_node_change,
        )
        self.listeners: list[Callable[[str, Mapping[str, Any]], None]] = []
        self.jobs = JobRunner(self)
        if self.chat is not None:
            self.listeners.append(self.chat.handle)
        from clawfed.coordinator.approval_gate import RefusalAuditor

        self.listeners.append(RefusalAuditor(self.db, self.audit))
        self._server: aio.Server | None = None
        self._gate: TlsGate | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stall_watch: asyncio.Task[None] | None = None
        self.port = 0

    # ---- lifecycle --------------------------------------------------------------------
    async def start(self) -> int:
        """Start serving; return the public (TLS) port."""
        s = self.ws.settings
        # No session survives a coordinator: flags a killed predecessor left are stale.
        for record in self.nodes.list():
            if record.connected:
                self.nodes.set_connected(record.node_id, False)
        server = aio.server(
            options=[
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_ping_strikes", 0),
                *SESSION_SERVER_OPTIONS,
            ]
        )
        handler = grpc.method_handlers_generic_handler(
            "clawfed.v1.Federation",
            {
                "Session": grpc.stream_stream_rpc_method_handler(
                    self._session,
                    request_deserializer=deserialize_node_message,
                    response_serializer=_serialize,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        pb_grpc.add_AdminServicer_to_server(AdminService(self), server)
        upstream = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        self._gate = TlsGate(
            listen_host=s.bind_host,
            listen_port=s.port,
            upstream_port=upstream,
            ca_cert_pem=self.ws.ca().cert_pem,
            server=self.ws.server(),
            allowlist=IpAllowlist(list(s.allowlist)),
            is_revoked=self._is_revoked,
            on_refusal=self._on_refusal,
        )
        self.port = self._gate.start()
        self._monitor = asyncio.create_task(self._watch_heartbeats())
        self._stall_watch = asyncio.create_task(
            self.hub.watch_stalls(self.ws.settings.heartbeat_interval_s)
        )
        self.jobs.resume_all()
        if self.web_address is not None:
            from clawfed.api.serve import WebServer

            self.web = WebServer(self, *self.web_address)
            log.info("dashboard and REST API at %s", await self.web.start())
        if self.chat is not None:
            url = self.chat.start()
            if url:
                log.info("chat callback endpoint at %s", url)
            from clawfed.coordinator.query import attach_to_chat

            attach_to_chat(self)  # regional questions in chat run as federated queries
        log.info(
            "coordinator %s listening on %s:%d (mutual TLS)", s.federation, s.bind_host, self.port
        )
        return self.port

    async def stop(self) -> None:
        """Stop jobs, sessions, the gate and the server; bounded waits only."""
        if self.chat is not None:
            self.chat.stop()  # first, so shutdown disconnects are not announced as node loss
        if self.web is not None:
            await self.web.stop()
        await self.jobs.stop_all()
        for watcher in (self._monitor, self._stall_watch):
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        if self._gate is not None:
            await asyncio.to_thread(self._gate.stop)
        if self._server is not None:
            await self._server.stop(grace=1.0)
        self.db.close()

    # ---- admission --------------------------------------------------------------------
    def _is_revoked(self, identity: PeerIdentity) -> bool:
        if identity.role is not Role.NODE:
            return False
        return self.nodes.is_revoked_serial(identity.serial)

    def _on_refusal(self, refusal: Refusal) -> None:
        self.audit.append(
            actor=refusal.node_id or f"ip:{refusal.peer_ip}",
            role="node",
            action="connect.refused",
            resource="federation",
            departments=[],
            detail={
                "reason": str(refusal.reason),
                "detail": refusal.detail,
                "peer_ip": refusal.peer_ip,
            },
            outcome="refused",
        )

    def refuse(
        self, identity: PeerIdentity | None, peer: str, reason: RefusalReason, detail: str
    ) -> None:
        """Log and audit a refusal decided after the TLS handshake."""
        who = identity.node_id if identity else peer
        log.warning("refused %s: %s (%s)", who, reason, detail)
        self.audit.append(
            actor=who,
            role=str(identity.role) if identity else "unknown",
            action="connect.refused",
            resource="federation",
            departments=[identity.department] if identity else [],
            detail={"reason": str(reason), "detail": detail},
            outcome="refused",
        )

    def identity(self, context: aio.ServicerContext[Any, Any]) -> PeerIdentity | None:
        """Who is on the other end of this gRPC call, as the gate authenticated them."""
        assert self._gate is not None
        return self._gate.identity_for(context.peer())

    def drop_node(self, node_id: str) -> int:
        """Close every live connection of ``node_id`` at the gate."""
        return 0 if self._gate is None else self._gate.drop(node_id)

    async def revoke(self, node_id: str, reason: str, *, actor: str) -> bool:
        """Revoke ``node_id`` in the store and drop its live session; True if it was live."""
        record = self.nodes.get(node_id)
        if not record.revoked:
            self.nodes.revoke(node_id, reason)
        session = self.hub.get(node_id)
        if session is not None:
            try:
                await asyncio.wait_for(
                    session.send(
                        pb.CoordinatorMessage(
                            goodbye=pb.Goodbye(
                                code="revoked", message=f"this node was revoked: {reason}"
                            )
                        )
                    ),
                    _GOODBYE_GRACE_S,
                )
                # Let the node read the goodbye and hang up itself: cutting the connection
                # at once can destroy the goodbye in flight, and a node that never learns it
                # was revoked keeps redialling.
                await asyncio.wait_for(session.closed.wait(), _GOODBYE_GRACE_S)
            except (TimeoutError, aio.AioRpcError, RuntimeError):
                pass
            if not session.closed.is_set() and session.task is not None:
                session.close_reason = "revoked"
                session.task.cancel()
        dropped = self.drop_node(node_id)
        self.audit.append(
            actor=actor,
            role="data_admin",
            action="node.revoke",
            resource=f"node:{node_id}",
            departments=[record.department],
            detail={"reason": reason, "connections_dropped": dropped},
            outcome="ok",
        )
        return session is not None or dropped > 0

    # ---- the session stream -----------------------------------------------------------
    async def _session(
        self, request_iterator: Any, context: aio.ServicerContext[pb.NodeMessage, Any]
    ) -> None:
        del request_iterator
        identity = self.identity(context)
        if identity is None:
            self.refuse(
                None,
                context.peer(),
                RefusalReason.NO_CERTIFICATE,
                "connection did not come through the TLS gate",
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "use the federation port")
            return
        if identity.role is not Role.NODE:
            self.refuse(
                identity,
                context.peer(),
                RefusalReason.NOT_A_NODE,
                f"certificate role is {identity.role}",
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a node certificate")
            return
        try:
            record = self.nodes.get(identity.node_id)
        except NotFoundError:
            self.refuse(
                identity,
                context.peer(),
                RefusalReason.UNKNOWN_NODE,
                "no node with this id is enrolled",
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "node is not enrolled")
            return
        try:
            first = await asyncio.wait_for(context.read(), _HELLO_TIMEOUT_S)
            hello = check_hello(first)
        except (TimeoutError, ValueError) as exc:
            self.refuse(
                identity,
                context.peer(),
                RefusalReason.PROTOCOL_MISMATCH,
                str(exc) or "no hello in time",
            )
            return
        if hello.protocol_version != PROTOCOL_VERSION:
            self.refuse(
                identity,
                context.peer(),
                RefusalReason.PROTOCOL_MISMATCH,
                f"node speaks v{hello.protocol_version}, coordinator v{PROTOCOL_VERSION}",
            )
            await context.write(version_goodbye(hello.protocol_version))
            return
        info = NodeInfo(identity.node_id, record.department)
        session = NodeSession(info, context, self.hub)
        session.datasets = {d.name: d.metadata_json for d in hello.datasets}
        session.task = asyncio.current_task()
        # The welcome goes out before the hub (and so the round engine) can see the session:
        # a task written meanwhile would reach the node first, and two writes at once on one
        # call fail in gRPC (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS).
        await session.send(
            pb.CoordinatorMessage(
                welcome=pb.Welcome(
                    protocol_version=PROTOCOL_VERSION,
                    node_id=identity.node_id,
                    department=record.department,
                    heartbeat_interval_s=self.ws.settings.heartbeat_interval_s,
                    chunk_size=self.ws.settings.chunk_size,
                )
            )
        )
        old = await self.hub.attach(session)
        try:
            if old is not None and old.task is not None:
                old.close_reason = "replaced by a newer session of the same node"
                old.task.cancel()
            self.nodes.set_connected(identity.node_id, True)
            self.audit.append(
                actor=identity.node_id,
                role="node",
                action="connect",
                resource="federation",
                departments=[record.department],
                detail={"datasets": sorted(session.datasets)},
                outcome="ok",
            )
            await session.read_loop()
        finally:
            await self.hub.detach(session)
            if self.hub.get(identity.node_id) is None:
                self.nodes.set_connected(identity.node_id, False)
            log.info("node %s disconnected: %s", identity.node_id, session.close_reason)

    async def _watch_heartbeats(self) -> None:
        s = self.ws.settings
        limit = s.heartbeat_interval_s * s.heartbeat_misses
        while True:
            await asyncio.sleep(s.heartbeat_interval_s)
            now = time.monotonic()
            for session in self.hub.sessions():
                # A session busy receiving (or waiting for memory to receive) is not read
                # from meanwhile, so its silence proves nothing; but the node still needs
                # our heartbeats, or it gives up on a coordinator that went quiet.
                if (
                    not session.busy_receiving
                    and now - session.last_seen > limit
                    and session.task is not None
                ):
                    session.close_reason = f"no heartbeat for {limit:g} s"
                    session.task.cancel()
                    continue
                if not session.write_busy:
                    try:
                        await session.send(
                            pb.CoordinatorMessage(heartbeat=pb.Heartbeat(sent_at_unix=time.time()))
                        )
                    except (aio.AioRpcError, RuntimeError):
                        pass

    def _on_node_change(self, change: str, info: NodeInfo) -> None:
        log.info("node %s (%s) %s", info.node_id, info.department, change)
        self.events("node_" + change, {"node_id": info.node_id, "department": info.department})

    def events(self, kind: str, data: Mapping[str, Any]) -> None:
        """Tell every listener (job watchers, chat notifier) what happened; never raises."""
        log.debug("event %s", kind)
        self.jobs.changed()
        for listener in list(self.listeners):
            try:
                listener(kind, data)
            except Exception:  # a listener's bug must not stop a round
                log.exception("event listener failed on %s", kind)
