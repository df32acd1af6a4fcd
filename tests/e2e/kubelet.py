"""Run the pods the operator renders as local processes: a kubelet just faithful enough for a test.

`pods_of(jobset, role, attempt)` expands one replicatedJob of a rendered JobSet into the pods its
Job (job index 0) would make: one per completion index, named and labelled as the JobSet and
Job controllers name them, with the completion index annotation. `Kubelet.start(pod, env)` runs a
pod in a thread, as a kubelet would:

- env: plain `value`s, `fieldRef`s (metadata.name / namespace, the completion index annotation),
  `secretKeyRef`s and `envFrom` Secrets (from the `secrets` given), then `$(VAR)` expansion in
  command and args;
- volumes: every volumeMount becomes a fresh folder; a ConfigMap volume gets the ConfigMap's keys
  as files; paths in command, args and env values that start with a mountPath are rewritten;
- network: each pod has its own metrics port on localhost (`ports[pod]`): what a pod IP gives each
  pod on a cluster, where they all listen on spec.metrics.port;
- containers: the init containers one after the other (a failure ends the pod), then the main one;
- termination: the container's termination log is a file ($OREAL_TERMINATION_LOG); its message
  is that file, or with `FallbackToLogsOnError` the tail of the container's log after a failure;
  an exit by signal is 128 + the signal, as the container runtime reports it.

The `oreal` and `torchrun` executables are run with this test's Python interpreter. Nothing else
is emulated (no resources, probes, security context, DNS).
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Pod:
    name: str
    namespace: str
    index: int
    spec: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]


def pods_of(jobset: dict[str, Any], role: str, attempt: int = 0) -> list[Pod]:
    """The pods of `role`'s Job, as the Job controller makes them (`attempt` tells replacements apart)."""
    meta = jobset["metadata"]
    [rjob] = [r for r in jobset["spec"]["replicatedJobs"] if r["name"] == role]
    job = rjob["template"]["spec"]
    template = job["template"]
    job_name = f"{meta['name']}-{role}-0"
    return [
        Pod(
            name=f"{job_name}-{i}-a{attempt}",
            namespace=meta["namespace"],
            index=i,
            spec=template["spec"],
            labels=dict(template["metadata"].get("labels", {})),
            annotations={**template["metadata"].get("annotations", {}), COMPLETION_INDEX: str(i)},
        )
        for i in range(job["completions"])
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Terminated:
    container: str
    exit_code: int
    message: str


@dataclass
class PodProcess:
    """A pod's containers running in a thread; `result` is set when the pod has ended."""

    pod: Pod
    result: Terminated | None = None
    _proc: subprocess.Popen | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _killed: int | None = None
    _thread: threading.Thread | None = None

    def poll(self) -> Terminated | None:
        return self.result

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the running container (init or main); a pod not started yet never starts."""
        with self._lock:
            self._killed = sig
            if self._proc is not None and self._proc.poll() is None:
                self._proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> Terminated | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result


class Kubelet:
    def __init__(
        self, root: Path, configmaps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]
    ) -> None:
        self.root = root
        self.configmaps = configmaps
        self.secrets = secrets
        self.ports: dict[str, int] = {}  # pod name -> its metrics port on localhost

    def _field(self, pod: Pod, path: str) -> str:
        if path == "metadata.name":
            return pod.name
        if path == "metadata.namespace":
            return pod.namespace
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            return (pod.labels if match.group(1) == "labels" else pod.annotations)[match.group(2)]
        raise AssertionError(f"fieldRef {path!r} is not emulated")

    def _env(self, pod: Pod, container: dict[str, Any], mounts: dict[str, Path]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                env.update(self.secrets[source["secretRef"]["name"]])
            elif "configMapRef" in source:
                env.update(self.configmaps[source["configMapRef"]["name"]])
        for item in container.get("env", []):
            if "value" in item:
                value = _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), item["value"])
            else:
                ref = item["valueFrom"]
                if "fieldRef" in ref:
                    value = self._field(pod, ref["fieldRef"]["fieldPath"])
                elif "secretKeyRef" in ref:
                    value = self.secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
                else:
                    raise AssertionError(f"env source {ref} is not emulated")
            env[item["name"]] = _rewrite(value, mounts)
        if env.get("OREAL_METRICS_PORT", "0") != "0":  # the pod's own network: its own port
            env["OREAL_METRICS_PORT"] = str(self.ports.setdefault(pod.name, free_port()))
        return env

    def _mounts(self, pod: Pod, container: dict[str, Any]) -> dict[str, Path]:
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            folder = self.root / pod.name / "volumes" / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = self.configmaps[volume["configMap"]["name"]]
                items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    (folder / item["path"]).write_text(data[item["key"]])
            mounts[mount["mountPath"]] = folder / mount.get("subPath", "")
        return mounts

    def command(self, pod: Pod, container: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        mounts = self._mounts(pod, container)
        env = self._env(pod, container, mounts)
        argv = [*container.get("command", []), *container.get("args", [])]
        argv = [_rewrite(_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), a), mounts) for a in argv]
        if argv and argv[0] == "oreal":
            argv = [sys.executable, "-m", "oreal.cli", *argv[1:]]
        elif argv and argv[0] == "torchrun":
            argv = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
        return argv, env

    def start(self, pod: Pod, base_env: dict[str, str]) -> PodProcess:
        """Start the pod's containers (init containers first) in a thread; returns at once."""
        handle = PodProcess(pod)
        handle._thread = threading.Thread(target=self._run, args=(handle, base_env), daemon=True)
        handle._thread.start()
        return handle

    def _run(self, handle: PodProcess, base_env: dict[str, str]) -> None:
        pod = handle.pod
        folder = self.root / pod.name
        folder.mkdir(parents=True, exist_ok=True)
        containers = [*pod.spec.get("initContainers", []), *pod.spec["containers"]]
        for container in containers:
            argv, env = self.command(pod, container)
            termination_log = folder / f"{container['name']}.termination-log"
            env["OREAL_TERMINATION_LOG"] = str(termination_log)
            log_path = folder / f"{container['name']}.log"
            with log_path.open("w") as log, handle._lock:
                if handle._killed is not None:
                    handle.result = Terminated(
                        container["name"], 128 + handle._killed, "killed before it started"
                    )
                    return
                handle._proc = subprocess.Popen(
                    argv, env=base_env | env, stdout=log, stderr=subprocess.STDOUT, cwd=folder
                )
            code = handle._proc.wait()
            code = 128 - code if code < 0 else code  # a signal, as the runtime reports it
            if code != 0 or container is containers[-1]:
                message = termination_log.read_text() if termination_log.exists() else ""
                if (
                    not message
                    and code != 0
                    and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
                ):
                    message = "\n".join(log_path.read_text().splitlines()[-3:])
                handle.result = Terminated(container["name"], code, message)
                return

    def logs(self, pod_name: str) -> str:
        return "\n".join(p.read_text()[-1500:] for p in sorted((self.root / pod_name).glob("*.log")))


def _rewrite(value: str, mounts: dict[str, Path]) -> str:
    for mount_path, folder in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(folder) + value[len(mount_path) :]
    return value


def signal_name(code: int) -> str:
    return signal.Signals(code - 128).name if code > 128 else str(code)
