"""The Admin gRPC service: what a data admin's CLI asks of a running coordinator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from clawfed.coordinator.jobspec import parse_job
from clawfed.core import ClawfedError, ConfigError, NotFoundError, RefusalReason
from clawfed.security.pki import PeerIdentity, Role
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire._proto import federation_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from clawfed.coordinator.server import Coordinator

Context = aio.ServicerContext[Any, Any]


class AdminService(pb_grpc.AdminServicer):  # type: ignore[misc]  # generated, untyped
    """Every call needs an admin certificate (issued by ``clawfed init``)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator

    async def _admin(self, context: Context) -> PeerIdentity:
        identity = self._c.identity(context)
        if identity is None or identity.role is not Role.ADMIN:
            self._c.refuse(
                identity,
                context.peer(),
                RefusalReason.NOT_AN_ADMIN,
                "admin call without an admin certificate",
            )
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "this call needs the admin certificate of the workspace",
            )
            raise AssertionError("unreachable: abort raises")
        return identity

    async def _fail(self, context: Context, exc: ClawfedError) -> None:
        code = (
            grpc.StatusCode.NOT_FOUND
            if isinstance(exc, NotFoundError)
            else (
                grpc.StatusCode.INVALID_ARGUMENT
                if isinstance(exc, ConfigError)
                else grpc.StatusCode.FAILED_PRECONDITION
            )
        )
        await context.abort(code, str(exc))

    async def Revoke(self, request: pb.RevokeRequest, context: Context) -> pb.RevokeReply:
        admin = await self._admin(context)
        try:
            was = await self._c.revoke(
                request.node_id, request.reason or "revoked by admin", actor=admin.node_id
            )
        except ClawfedError as exc:
            await self._fail(context, exc)
            raise
        return pb.RevokeReply(was_connected=was)

    async def SubmitJob(self, request: pb.SubmitJobRequest, context: Context) -> pb.JobInfo:
        admin = await self._admin(context)
        try:
            spec = parse_job(request.spec_yaml)
            return self._c.jobs.submit(spec, actor=admin.node_id)
        except ClawfedError as exc:
            await self._fail(context, exc)
            raise

    async def GetJob(self, request: pb.JobRef, context: Context) -> pb.JobInfo:
        await self._admin(context)
        try:
            return self._c.jobs.info(request.job_id)
        except ClawfedError as exc:
            await self._fail(context, exc)
            raise

    async def WatchJob(self, request: pb.JobRef, context: Context) -> AsyncIterator[pb.JobInfo]:
        await self._admin(context)
        try:
            async for info in self._c.jobs.watch(request.job_id):
                yield info
        except ClawfedError as exc:
            await self._fail(context, exc)
            raise

    async def CancelJob(self, request: pb.JobRef, context: Context) -> pb.JobInfo:
        admin = await self._admin(context)
        try:
            return await self._c.jobs.cancel(request.job_id, actor=admin.node_id)
        except ClawfedError as exc:
            await self._fail(context, exc)
            raise

    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsReply:
        del request
        await self._admin(context)
        return pb.ListJobsReply(jobs=self._c.jobs.list_info())

    async def ListNodes(self, request: pb.ListNodesRequest, context: Context) -> pb.ListNodesReply:
        del request
        await self._admin(context)
        reply = pb.ListNodesReply()
        for rec in self._c.nodes.list():
            reply.nodes.add(
                node_id=rec.node_id,
                department=rec.department,
                connected=self._c.hub.get(rec.node_id) is not None,
                revoked=rec.revoked_at is not None,
                last_seen_unix=rec.last_seen_at.timestamp() if rec.last_seen_at else 0.0,
            )
        return reply
