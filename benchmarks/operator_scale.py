"""The operator at scale: N OREALRuns created at once against a constant-cost API stub.

    python benchmarks/operator_scale.py                        # 100 and 1,000 runs
    python benchmarks/operator_scale.py --runs 100 --tick 2

`python -m oreal_operator` runs as its own process, with the chart's settings, as the operator
image ships it: without the `kubernetes` client library (a sitecustomize on its PYTHONPATH makes
that package unimportable, as it is in a base install; Kopf would import all its models), against
`api_stub.Stub` (not kmock: kmock scans its whole request history for every request, so at a few
hundred runs it, not the operator, is what gets timed). Once the operator has listed its children
and opened its watches, N runs are stored at once (the stub's own writes, no request); then:

  create -> JobSet   seconds from a run's creation to the operator's create of its JobSet (p50, p99)
  create -> ready    ... to its first status write with observedGeneration 1 (p50, p99)
  requests/run       the operator's API requests (everything but its long-lived watches) from the
                     runs' creation until every run is ready, per run
  idle requests      requests during `--idle-ticks` status intervals after that, per run and tick
                     (the target is 0: an idle run costs only what its watches deliver)
  CPU-s/run          the operator process's user + system CPU seconds until every run is ready,
                     per run (and the stub's, the benchmark process's own, beside it: it shares
                     the machine's cores with the operator)
  peak RSS           the process's VmHWM
  stop               seconds from SIGTERM to exit, the exit code, and whether the log shows a
                     traceback or a handler that did not exit in time
  torch              whether any torch library is mapped into the process (/proc/PID/maps)
  load               the machine's 1-minute load average just before the runs were created

Writes a Markdown table to --out (default benchmarks/results/operator.md). `--profile DIR` runs
the operator under cProfile (DIR/operator-N.prof, written at its exit; the figures then include
the profiler's own cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_stub import Stub  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
TARGETS = {100: 2.0, 1000: 5.0}  # p99 create -> JobSet, seconds (issue #16)
# What a base install (`pip install oreal`, the operator image) lacks, made unimportable in the
# operator process.
NOT_SHIPPED = ("kubernetes",)
BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class NotShipped(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the operator image)", name=name)
sys.meta_path.insert(0, NotShipped())
open({marker!r}, "w").close()  # the benchmark checks that this ran
"""


def run_body(i: int) -> dict[str, Any]:
    name = f"run-{i:05d}"
    return {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"policy": "s3://models/qwen2.5-0.5b/"},
            "data": {"prompts": "s3://data/math.jsonl"},
            "storage": {"uri": f"s3://runs/{NAMESPACE}/{name}", "secretRef": {"name": "bucket"}},
            "algorithm": {"steps": 10, "warmupSteps": 1, "promptsPerStep": 8, "samplesPerPrompt": 4},
            "rollout": {"replicas": 2, "gpusPerReplica": 1},
            "verifier": {"replicas": 1},
            "trainer": {"nodes": 1, "gpusPerNode": 2},
        },
    }


class Server:
    """The stub in a thread of its own (its event loop must not share the benchmark's waits)."""

    def __init__(self) -> None:
        self.stub = Stub()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        started.wait(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.stub.app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started.set()
        self.loop.run_forever()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the stub's loop and wait for it."""
        done = threading.Event()
        out: list[Any] = []
        self.loop.call_soon_threadsafe(lambda: (out.append(fn(*args)), done.set()))
        done.wait(30)
        return out[0] if out else None


@dataclass
class Result:
    runs: int
    to_jobset: list[float]
    to_ready: list[float]
    requests_per_run: float
    idle_per_run_tick: float
    cpu_per_run: float
    stub_cpu_per_run: float
    peak_rss_mb: float
    stop_seconds: float
    exit_code: int | None
    clean_log: bool
    torch_loaded: bool
    ready: int
    load: float  # 1-minute load average when the runs were created


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def operator_requests(stub: Stub) -> int:
    return sum(n for (verb, _), n in stub.requests.items() if verb != "watch")


def measure(runs: int, tick: float, idle_ticks: int, timeout: float, profile: Path | None = None) -> Result:
    server = Server()
    stub = server.stub
    server.call(stub.insert, "namespaces", {"metadata": {"name": NAMESPACE}})  # Kopf waits for it
    for plural in ("orealruns", "jobsets"):
        group = "oreal.io" if plural == "orealruns" else "jobset.x-k8s.io"
        crd = {
            "metadata": {"name": f"{plural}.{group}"},
            "status": {"conditions": [{"type": "Established", "status": "True"}]},
        }
        server.call(stub.insert, "customresourcedefinitions", crd)
    created: dict[str, float] = {}
    jobset_at: dict[str, float] = {}
    ready_at: dict[str, float] = {}

    def on_create(plural: str, obj: dict[str, Any]) -> None:
        if plural == "jobsets":
            jobset_at.setdefault(obj["metadata"]["name"], time.monotonic())

    def on_status(plural: str, obj: dict[str, Any]) -> None:
        if plural == "orealruns" and (obj.get("status") or {}).get("observedGeneration") == 1:
            ready_at.setdefault(obj["metadata"]["name"], time.monotonic())

    stub.on_create, stub.on_status = on_create, on_status
    folder = Path(tempfile.mkdtemp(prefix="oreal-operator-bench-"))
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
        "users": [{"name": "stub", "user": {"token": "bench"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
    }))  # fmt: skip
    marker = folder / "blocker-loaded"
    (folder / "sitecustomize.py").write_text(BLOCKER.format(blocked=NOT_SHIPPED, marker=str(marker)))
    pythonpath = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(
        os.environ,
        PYTHONPATH=pythonpath,
        KUBECONFIG=str(kubeconfig),
        OREAL_WORKER_IMAGE="registry.example/oreal-worker:bench",
        OREAL_OPERATOR_NAMESPACES=NAMESPACE,
        OREAL_OPERATOR_METRICS_PORT="0",
        OREAL_OPERATOR_HEALTH_PORT="0",
        OREAL_OPERATOR_STATUS_SECONDS=str(tick),
        PYTHONUNBUFFERED="1",
    )
    log_path = folder / "operator.log"
    command = [sys.executable, "-m", "oreal_operator"]
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        command[1:1] = ["-m", "cProfile", "-o", str(profile / f"operator-{runs}.prof")]
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    ps = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while not all(stub.watches[p] for p in ("orealruns", "jobsets", "configmaps")):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.05)
        assert marker.exists(), (
            f"the operator ran with {NOT_SHIPPED} importable: {log_path.read_text()[-3000:]}"
        )
        time.sleep(0.5)  # the primed caches settle
        me = psutil.Process()
        cpu0, requests0 = sum(ps.cpu_times()[:2]), operator_requests(stub)
        stub_cpu0 = sum(me.cpu_times()[:2])
        load = os.getloadavg()[0]
        bodies = [run_body(i) for i in range(runs)]

        def create_all() -> None:
            for body in bodies:
                created[body["metadata"]["name"]] = time.monotonic()
                stub.insert("orealruns", body)

        server.call(create_all)
        deadline = time.monotonic() + timeout
        while len(ready_at) < runs and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu1, requests1 = sum(ps.cpu_times()[:2]), operator_requests(stub)
        stub_cpu1 = sum(me.cpu_times()[:2])
        time.sleep(tick)  # what was in flight lands
        idle0 = operator_requests(stub)
        time.sleep(tick * idle_ticks)
        idle1 = operator_requests(stub)
        rss = peak_rss_mb(proc.pid)
        torch_loaded = "torch" in Path(f"/proc/{proc.pid}/maps").read_text()
        stop0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = proc.wait(120)
        except subprocess.TimeoutExpired:
            code = None
        stop = time.monotonic() - stop0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    clean = "Traceback" not in text and "did not exit in time" not in text
    names = [b["metadata"]["name"] for b in bodies]
    return Result(
        runs=runs,
        to_jobset=[jobset_at[n] - created[n] for n in names if n in jobset_at],
        to_ready=[ready_at[n] - created[n] for n in names if n in ready_at],
        requests_per_run=(requests1 - requests0) / runs,
        idle_per_run_tick=(idle1 - idle0) / runs / idle_ticks,
        cpu_per_run=(cpu1 - cpu0) / runs,
        stub_cpu_per_run=(stub_cpu1 - stub_cpu0) / runs,
        peak_rss_mb=rss,
        stop_seconds=stop,
        exit_code=code,
        clean_log=clean,
        torch_loaded=torch_loaded,
        ready=len(ready_at),
        load=load,
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def table(results: list[Result], tick: float, idle_ticks: int) -> str:
    lines = [
        "| runs | ready | create→JobSet p50 / p99 (s) | create→ready p50 / p99 (s) | requests/run | idle requests/run/tick | CPU-s/run (stub's) | peak RSS (MB) | stop (s), exit | torch | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.runs} | {r.ready} | {pct(r.to_jobset, 0.5):.2f} / {pct(r.to_jobset, 0.99):.2f} "
            f"| {pct(r.to_ready, 0.5):.2f} / {pct(r.to_ready, 0.99):.2f} | {r.requests_per_run:.2f} "
            f"| {r.idle_per_run_tick:.3f} | {r.cpu_per_run * 1000:.1f} ms ({r.stub_cpu_per_run * 1000:.1f}) "
            f"| {r.peak_rss_mb:.0f} "
            f"| {r.stop_seconds:.1f}, {r.exit_code}{'' if r.clean_log else ' (log: traceback)'} "
            f"| {'loaded' if r.torch_loaded else 'no'} | {r.load:.1f} |"
        )
    lines.append("")
    cores, load = os.cpu_count(), os.getloadavg()[0]
    lines.append(
        f"Status tick {tick:g} s; idle requests over {idle_ticks} ticks after every run was ready; "
        f"the operator without {', '.join(NOT_SHIPPED)} (as shipped); {cores} cores; load: the 1-minute "
        f"load average when the runs were created ({load:.1f} when the table was written)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--tick", type=float, default=5.0, help="OREAL_OPERATOR_STATUS_SECONDS")
    parser.add_argument("--idle-ticks", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "operator.md")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the operator into this folder")
    args = parser.parse_args(argv)
    results = []
    for runs in args.runs:
        result = measure(runs, args.tick, args.idle_ticks, args.timeout, args.profile)
        results.append(result)
        target = TARGETS.get(runs)
        verdict = "" if target is None else f" (target p99 <= {target:g} s)"
        print(
            f"{runs} runs: create->JobSet p50 {pct(result.to_jobset, 0.5):.2f} s p99 "
            f"{pct(result.to_jobset, 0.99):.2f} s{verdict}; {result.requests_per_run:.2f} requests/run; "
            f"idle {result.idle_per_run_tick:.3f}/run/tick; {result.cpu_per_run * 1000:.1f} ms CPU/run "
            f"(stub {result.stub_cpu_per_run * 1000:.1f}); "
            f"peak RSS {result.peak_rss_mb:.0f} MB; stop {result.stop_seconds:.1f} s exit {result.exit_code}; "
            f"load {result.load:.1f}",
            flush=True,
        )
    text = table(results, args.tick, args.idle_ticks)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        header = args.out.read_text().split("<!-- results -->")[0] if args.out.exists() else ""
        args.out.write_text(f"{header}<!-- results -->\n\n{text}\n" if header else f"{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
