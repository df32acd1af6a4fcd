import os

import pytest
import torch
from trainer_fixtures import tiny_model_dir

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("qwen2") / "policy", "qwen2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("llama") / "policy", "llama", seed=1)
