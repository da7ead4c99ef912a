"""`portway run --apply FILE [--watch]`: the tunnels a YAML file declares, over one agent connection.

An `Applier` owns the desired set and makes one control channel match it: on start, after every reconnect
(the agent's `Backoff`/`is_fatal` policy) and, with --watch, whenever the file changes. Tunnels are keyed
by name: an added one is created, a removed one closed, a changed one closed and created again. A tunnel
recreated after a reconnect or a change asks for the address it had, so its public URL stays the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from portway.agent import Backoff, Client, ControlChannel, Tunnel, is_fatal
from portway.cli.applyreport import Reporter
from portway.cli.applyspec import TunnelSpec, parse_apply
from portway.cli.common import agent_options, client, fail
from portway.cli.runtime import run, until_signal
from portway.errors import ConfigError, EngineRejected, PortwayError
from portway.wire.messages import TunnelProperties

log = logging.getLogger("portway.cli.apply")

WATCH_INTERVAL_S = 0.5
SHUTDOWN_S = 12.0  # ControlChannel.close waits at most 2 x 5 s


def read_apply(path: Path) -> dict[str, TunnelSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8"
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    return parse_apply(text, str(path))


class TunnelRefused(PortwayError):
    """The engine refused a declared tunnel (without --watch this ends the run)."""


@dataclass(slots=True)
class Running:
    spec: TunnelSpec
    tunnel: Tunnel
    forward: asyncio.Future[None]


class Applier:
    """Keeps the declared tunnels open on one control channel. `keep_going` (--watch) reports a refused
    tunnel and carries on; otherwise a refusal ends `run()` with the engine's error."""

    def __init__(self, agent: Client, desired: dict[str, TunnelSpec], report: Reporter, *, retry: bool,
                 keep_going: bool) -> None:
        self._client = agent
        self._desired = desired
        self._report = report
        self._retry = retry
        self._keep_going = keep_going
        self._changed = asyncio.Event()
        self._assigned: dict[str, TunnelProperties] = {}  # the engine's last answer per name
        self._refused: dict[str, TunnelSpec] = {}  # not retried until the spec changes or we reconnect
        self._error: TunnelRefused | None = None

    def update(self, desired: dict[str, TunnelSpec]) -> None:
        """A new desired set (from the watched file); applied on the live channel right away."""
        self._desired = desired
        self._changed.set()

    async def run(self) -> None:
        """Connect, apply, and reconnect with backoff; raises fatal errors (bad token, refused tunnel)."""
        policy = Backoff()
        while True:
            self._report.connection("connecting")
            error: BaseException | None = None
            try:
                control = await self._client.connect()
            except PortwayError as failure:
                if is_fatal(failure) or not self._retry:
                    raise
                error = failure
            else:
                policy.reset()
                try:
                    error = await self._session(control)
                finally:
                    await control.close()
            if self._error is not None:
                raise self._error
            if not self._retry:
                return
            self._report.connection("reconnecting", error)
            await asyncio.sleep(policy.next_delay())

    async def _session(self, control: ControlChannel) -> BaseException | None:
        """Apply until the channel ends; returns what ended it."""
        running: dict[str, Running] = {}
        self._refused.clear()
        closed = asyncio.ensure_future(control.wait_closed())
        lost = True
        try:
            while not closed.done():
                self._changed.clear()
                await self._reconcile(control, running)
                if self._error is not None:
                    lost = False
                    return None
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait({closed, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
            return closed.exception()
        except asyncio.CancelledError:
            lost = False
            raise
        finally:
            closed.cancel()
            for name, entry in running.items():
                entry.forward.cancel()
                if lost:
                    self._report.tunnel("offline", name, entry.spec, reason="connection lost")

    async def _reconcile(self, control: ControlChannel, running: dict[str, Running]) -> None:
        for name, entry in list(running.items()):
            wanted = self._desired.get(name)
            if wanted == entry.spec:
                continue
            del running[name]
            entry.forward.cancel()
            with contextlib.suppress(PortwayError, TimeoutError):
                await entry.tunnel.close()
            self._report.tunnel("closed", name, entry.spec, reason="changed" if wanted else "removed")
        todo = [spec for name, spec in self._desired.items()
                if name not in running and self._refused.get(name) != spec]
        log.debug("reconciled: %d running, creating %s", len(running), [spec.name for spec in todo])
        results = await asyncio.gather(*(self._open(control, spec) for spec in todo))
        for spec, tunnel in zip(todo, results, strict=True):
            if tunnel is not None:
                forward = asyncio.ensure_future(tunnel.forward_to(*spec.address))
                running[spec.name] = Running(spec, tunnel, forward)

    async def _open(self, control: ControlChannel, spec: TunnelSpec) -> Tunnel | None:
        wanted = spec.properties()
        sticky = self._sticky(spec, wanted)
        try:
            try:
                tunnel = await control.create_tunnel(sticky)
            except EngineRejected:
                if sticky == wanted:
                    raise
                tunnel = await control.create_tunnel(wanted)  # the old address is taken: take a new one
        except EngineRejected as error:
            self._refused[spec.name] = spec
            self._report.tunnel("failed", spec.name, spec, error=error)
            if not self._keep_going and self._error is None:
                self._error = TunnelRefused(f"tunnel {spec.name!r}: {error}")
            return None
        except (PortwayError, TimeoutError) as error:  # the channel is going: the session loop reconnects
            self._report.tunnel("failed", spec.name, spec, error=error)
            return None
        self._assigned[spec.name] = tunnel.properties
        self._report.tunnel("online", spec.name, spec, tunnel=tunnel)
        return tunnel

    def _sticky(self, spec: TunnelSpec, wanted: TunnelProperties) -> TunnelProperties:
        """`wanted`, asking for the hostname or TCP port this name had, unless the file sets one."""
        before = self._assigned.get(spec.name)
        if before is None or spec.host is not None or before.protocol != wanted.protocol or not wanted.publish:
            return wanted
        if wanted.protocol == "tcp":
            return wanted.replace(port=before.port) if spec.port is None and before.port else wanted
        return wanted.replace(hostname=before.hostname) if before.hostname else wanted


async def watch_file(path: Path, on_change: Callable[[dict[str, TunnelSpec]], None], report: Reporter,
                     current: dict[str, TunnelSpec], interval_s: float = WATCH_INTERVAL_S) -> None:
    """Poll the file's identity (mtime, size, inode) and apply each valid new version; an invalid edit is
    reported once and the running set is kept."""

    def signature() -> tuple[int, int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    seen = signature()
    while True:
        await asyncio.sleep(interval_s)
        now = signature()
        if now == seen:
            continue
        seen = now
        log.debug("%s changed; reading it", path)
        try:
            desired = read_apply(path)
        except ConfigError as error:
            report.invalid(str(error))
            continue
        if desired != current:
            current = desired
            on_change(desired)


@click.command("run")
@click.option("--apply", "apply_file", required=True, type=click.Path(dir_okay=False),
              help="YAML file declaring the tunnels.")
@click.option("--watch", is_flag=True, help="Re-apply when the file changes (checked every 0.5 s).")
@agent_options
@click.option("--retry/--no-retry", default=True, show_default=True, help="Reconnect when the engine goes away.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per state change.")
@click.pass_context
def run_command(ctx: click.Context, apply_file: str, watch: bool, engine_addr: str | None, token: str | None,
                token_file: str | None, ca_file: str | None, insecure: bool, retry: bool, output: str) -> None:
    """Run the tunnels declared in a YAML file over one engine connection.

    Every tunnel gets the labels rstream.managed-by=run and rstream.source=apply.

    \b
    Examples:
      portway run --apply tunnels.yaml
      portway run --apply tunnels.yaml --watch -o json
    \b
    tunnels.yaml:
      tunnels:
        - name: web
          target: 8080            # [host:]port
          protocol: http          # http, tls, tcp (default http)
          labels: {team: web}
          token_auth: true        # any TunnelProperties edge option
        - name: db
          target: 127.0.0.1:5432
          protocol: tcp
        - name: ssh
          target: 22
          publish: false          # private: portway nc rstrm://ssh
    """
    path = Path(apply_file)
    try:
        desired = read_apply(path)
    except ConfigError as error:
        fail(str(error), "see: portway run --help", code=2)
    agent = client(ctx, engine_addr, token, token_file, ca_file, insecure)
    run(_apply(agent, path, desired, watch=watch, retry=retry, output=output))


async def _apply(agent: Client, path: Path, desired: dict[str, TunnelSpec], *, watch: bool, retry: bool,
                 output: str) -> None:
    report = Reporter(output, errors_inline=watch)
    applier = Applier(agent, desired, report, retry=retry, keep_going=watch)
    job = asyncio.ensure_future(applier.run())
    tasks = {job, asyncio.ensure_future(until_signal())}
    if watch:
        tasks.add(asyncio.ensure_future(watch_file(path, applier.update, report, desired)))
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=SHUTDOWN_S)  # the control channel closes in order
    if job in done and not job.cancelled() and job.exception() is not None:
        fail(str(job.exception()), "check the engine address, token, CA file and the tunnels' options")
