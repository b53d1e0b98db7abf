"""Shared by the gang e2e tests (test_gang.py, test_gang_native.py): gpuplace's /debug/gangs, the
reservation-ledger audit polled while a scenario runs, a condition wait that says what it waited for."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gpuplace.localcluster.gpuplace_proc import GpuplaceServer
from gpuplace.localcluster.processes import probe, tail

AUDIT_INTERVAL = 0.2


def gangs(gp: GpuplaceServer) -> dict[str, Any]:
    """gpuplace's GET /debug/gangs (plans, holds, the ledger audit); {} while it is not answering."""
    status, body = probe(f"{gp.extender_base}/debug/gangs", ca_file=gp.cp.ca_file, timeout=5)
    return json.loads(body) if status == 200 else {}


async def gangs_now(gp: GpuplaceServer, within: float = 30) -> dict[str, Any]:
    """/debug/gangs once gpuplace answers (a busy gpuplace may miss a probe's timeout: {} is no answer,
    never "no plans"); fails with its log tail if it does not answer within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not (snap := await asyncio.to_thread(gangs, gp)):
        if asyncio.get_running_loop().time() > deadline:
            log = tail(gp.process.log_file) if gp.process is not None else ""
            pytest.fail(f"gpuplace's /debug/gangs did not answer within {within:.0f}s\n{log}")
        await asyncio.sleep(0.1)
    return snap


@contextlib.asynccontextmanager
async def ledger_audit(gp: GpuplaceServer) -> AsyncIterator[list[str]]:
    """Poll gpuplace's ledger audit while the block runs; the yielded list collects violations, and the
    block fails on exit if there was any. The end state is always audited once more (waiting for
    gpuplace to answer), so a short block on a busy machine is never left unaudited."""
    problems: list[str] = []

    async def poll() -> None:
        while True:
            snap = await asyncio.to_thread(gangs, gp)
            if snap:  # {} while gpuplace restarts
                problems.extend(snap["audit"])
            await asyncio.sleep(AUDIT_INTERVAL)

    task = asyncio.create_task(poll())
    try:
        yield problems
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    problems.extend((await gangs_now(gp))["audit"])
    assert problems == []


async def until(
    gp: GpuplaceServer,
    what: str,
    check: Callable[[], Awaitable[Any]],
    within: float = 60,
    also: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` until it returns something truthy; on timeout fail saying what was awaited, with
    gpuplace's /debug/gangs and its log tail (and `also()`: more state, e.g. kube-scheduler's log)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            log = tail(gp.process.log_file) if gp.process is not None else ""
            more = f"\n{also()}" if also is not None else ""
            pytest.fail(f"not within {within:.0f}s: {what}; /debug/gangs: {gangs(gp)}\n{log}{more}")
        await asyncio.sleep(0.1)
