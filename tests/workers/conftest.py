"""Fixtures for worker, engine, data and runner tests: a tiny answering model and tiny runs."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny Llama with a byte tokenizer that answers "The answer is D." (right about half the time)."""
    from support.tiny_model import build_tiny_model, teach_answer_format

    path = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", seed=0, hidden_size=64)
    return teach_answer_format(path, steps=300)


def write_prompts(path: Path, count: int = 24, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        a, b = rng.randint(0, 4), rng.randint(0, 4)
        rows.append({"id": f"p{i}", "problem": f"What is {a} + {b}?", "answer": str(a + b)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    return write_prompts(tmp_path / "prompts.jsonl")


def tiny_spec(model: Path, prompts: Path, **overrides) -> dict:
    spec = {
        "apiVersion": "oreal.io/v1alpha1",
        "kind": "OREALRun",
        "metadata": {"name": overrides.pop("name", "tiny")},
        "spec": {
            "model": {"policy": str(model), "dtype": "float32"},
            "data": {"prompts": str(prompts), "promptTemplate": "{problem}", "idField": "id"},
            "algorithm": {
                "steps": 3,
                "warmupSteps": 1,
                "promptsPerStep": 4,
                "samplesPerPrompt": 4,
                "seed": 1,
                "policyOptimizer": {"lr": 1e-3, "minLr": 1e-4},
                "rewardModelOptimizer": {"lr": 1e-3, "minLr": 1e-4},
            },
            "sampling": {"temperature": 0.7, "topP": 1.0, "maxNewTokens": 20, "maxPromptTokens": 128},
            "rollout": {"replicas": 2, "engine": "hf", "batchSize": 8, "gpusPerReplica": 0},
            "verifier": {"replicas": 1, "workers": 1, "timeoutSeconds": 5},
            "trainer": {
                "backend": "torch",
                "gpusPerNode": 0,
                "microBatchSize": 4,
                "gradientCheckpointing": False,
            },
            "checkpoint": {"every": 2, "keep": 2},
            "metrics": {"port": 0},
            "maxRestarts": 2,
        },
    }
    for dotted, value in overrides.items():
        node = spec["spec"]
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(spec))
    return path
