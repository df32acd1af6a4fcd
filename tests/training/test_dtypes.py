"""model.dtype `auto` per device: bf16 on GPUs and on CPUs with native bf16, fp32 on other CPUs."""

import os
import subprocess
import sys

import pytest
import torch

from oreal import dtypes
from oreal.dtypes import resolve_dtype


@pytest.fixture(autouse=True)
def _fresh_choice():
    dtypes._auto.cache_clear()
    yield
    dtypes._auto.cache_clear()


def test_explicit_dtypes_are_used_as_given():
    assert resolve_dtype("float32", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype("float16", "cuda") is torch.float16
    with pytest.raises(ValueError, match="model.dtype must be auto"):
        resolve_dtype("float64", "cpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, caplog, native):
    monkeypatch.setattr(dtypes, "cpu_bf16_support", lambda: (native, "because the test says so"))
    with caplog.at_level("INFO", logger="oreal.dtypes"):
        chosen = resolve_dtype("auto", torch.device("cpu"))
    assert chosen is (torch.bfloat16 if native else torch.float32)
    assert "because the test says so" in caplog.text  # what was chosen and why is logged


def test_auto_on_a_gpu_is_bf16():
    assert resolve_dtype("auto", "cuda:0") is torch.bfloat16


def test_an_avx2_only_cpu_gets_fp32():
    """ONEDNN_MAX_CPU_ISA=AVX2 reproduces a CPU without bf16 instructions on any x86-64 machine."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    code = "from oreal.dtypes import resolve_dtype, cpu_bf16_support; print(resolve_dtype('auto', 'cpu'), cpu_bf16_support()[0])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["torch.float32", "False"]


@pytest.mark.parametrize("capability", ["default", "avx2", "avx512", None])
def test_auto_runs_masked_attention_under_every_kernel_set(capability):
    """Whatever ATEN_CPU_CAPABILITY says, the dtype `auto` picks runs the hf engine's masked
    attention: on a bf16-capable CPU limited to avx2 kernels, ATen's bf16 attention raised
    "pack_vnni2 is only supported when avx512 is supported"."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability is not None:
        env["ATEN_CPU_CAPABILITY"] = capability
    code = (
        "import torch; from oreal.dtypes import resolve_dtype\n"
        "dtype = resolve_dtype('auto', 'cpu')\n"
        "q = torch.randn(2, 4, 7, 16, dtype=dtype)\n"
        "mask = torch.ones(2, 1, 7, 7, dtype=torch.bool).tril()\n"
        "out = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)\n"
        "print(dtype, bool(torch.isfinite(out.float()).all()))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    dtype, finite = out.stdout.split()
    assert finite == "True" and dtype in ("torch.float32", "torch.bfloat16")
    if capability in ("default", "avx2"):
        assert dtype == "torch.float32"
