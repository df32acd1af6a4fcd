"""Run the pods the operator renders as local processes: a kubelet just faithful enough for a test.

What it does for each pod of a StatefulSet (index i of `replicas`), as a kubelet would:
- env: plain `value`s, `fieldRef`s (metadata.name / metadata.namespace / the pod-index label),
  `secretKeyRef`s and `envFrom` Secrets (from the `secrets` given), then `$(VAR)` expansion in
  command and args;
- volumes: every volumeMount becomes a fresh folder; a ConfigMap volume gets the ConfigMap's keys
  as files; paths in command, args and env values that start with a mountPath are rewritten;
- containers: the init containers one after the other (each must exit 0), then the main one.
The `oreal` and `torchrun` executables are run with this test's Python interpreter.
Nothing else is emulated (no resources, probes, security context, networking).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Pod:
    name: str
    namespace: str
    index: int
    spec: dict[str, Any]
    labels: dict[str, str]


def pods_of(statefulset: dict[str, Any]) -> list[Pod]:
    meta, spec = statefulset["metadata"], statefulset["spec"]
    template = spec["template"]
    return [
        Pod(
            name=f"{meta['name']}-{i}",
            namespace=meta["namespace"],
            index=i,
            spec=template["spec"],
            labels={**template["metadata"].get("labels", {}), POD_INDEX_LABEL: str(i)},
        )
        for i in range(spec["replicas"])
    ]


class Kubelet:
    def __init__(
        self, root: Path, configmaps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]]
    ) -> None:
        self.root = root
        self.configmaps = configmaps
        self.secrets = secrets

    def _field(self, pod: Pod, path: str) -> str:
        if path == "metadata.name":
            return pod.name
        if path == "metadata.namespace":
            return pod.namespace
        match = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
        if match:
            return pod.labels[match.group(1)]
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

    def start(self, pod: Pod, base_env: dict[str, str]) -> subprocess.Popen:
        """Run the init containers to completion, then start the main container (one) and return it."""
        log_dir = self.root / pod.name
        log_dir.mkdir(parents=True, exist_ok=True)
        for init in pod.spec.get("initContainers", []):
            argv, env = self.command(pod, init)
            proc = subprocess.run(
                argv, env=base_env | env, capture_output=True, text=True, timeout=120, cwd=log_dir
            )
            assert proc.returncode == 0, f"{pod.name}/{init['name']}: {proc.stderr[-2000:]}"
        (main,) = pod.spec["containers"]
        argv, env = self.command(pod, main)
        log = (log_dir / f"{main['name']}.log").open("w")
        return subprocess.Popen(argv, env=base_env | env, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir)


def _rewrite(value: str, mounts: dict[str, Path]) -> str:
    for mount_path, folder in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(folder) + value[len(mount_path) :]
    return value
