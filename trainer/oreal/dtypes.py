"""`model.dtype: auto`, resolved for the device a role runs on: one rule for rollout (hf engine),
reference, trainer and evaluation.

- GPU: bfloat16.
- CPU with native bf16 arithmetic (AVX512-BF16 or AMX, oneDNN allowed to use it, and PyTorch's own
  kernels built for AVX-512): bfloat16, about 4x faster than fp32 for the quickstart's matmuls on
  such a CPU. `ATEN_CPU_CAPABILITY=avx2` or `default` on such a CPU (how one reproduces other CPUs)
  gives float32: ATen's bf16 attention then fails ("pack_vnni2 is only supported when avx512 is
  supported").
- Any other CPU: float32. Without those instructions oneDNN emulates bf16: a [32, 576] x [576, 1536]
  matmul took 47.5 ms against 0.93 ms in fp32 on an AVX2-only EPYC (51x slower), 22.6 ms against
  0.41 ms here under ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2.

An explicit `bfloat16`, `float16` or `float32` is used as given. The trainer keeps its trained
weights in fp32 whatever this says (see training/engine.py).
"""

from __future__ import annotations

import functools
import logging

import torch

log = logging.getLogger(__name__)

NAMED = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def cpu_bf16_support() -> tuple[bool, str]:
    """(native bf16 on this CPU, why): the hardware has AVX512-BF16 or AMX and oneDNN may use it.

    `ONEDNN_MAX_CPU_ISA` (e.g. AVX2) caps what oneDNN uses: `_is_mkldnn_bf16_supported` reads it;
    `ATEN_CPU_CAPABILITY` caps PyTorch's own kernels: `get_cpu_capability` reads it.
    """
    hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()  # noqa: SLF001
    if not hardware:
        return False, "this CPU has neither AVX512-BF16 nor AMX: bf16 would be emulated"
    capability = torch.backends.cpu.get_cpu_capability()
    if not capability.startswith("AVX512"):
        return False, f"PyTorch's CPU kernels are limited to {capability} (ATEN_CPU_CAPABILITY)"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():  # noqa: SLF001
        return False, "oneDNN may not use this CPU's bf16 instructions (ONEDNN_MAX_CPU_ISA)"
    return True, "this CPU computes bf16 natively (AVX512-BF16/AMX)"


def resolve_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """The torch dtype for spec.model.dtype `name` on `device` (see the module docstring)."""
    if name != "auto":
        if name not in NAMED:
            raise ValueError(f"model.dtype must be auto, {', '.join(NAMED)}; got {name!r}")
        return NAMED[name]
    return _auto(torch.device(device).type)


@functools.cache
def _auto(device_type: str) -> torch.dtype:
    if device_type != "cpu":
        chosen, why = torch.bfloat16, f"a {device_type} device"
    else:
        native, why = cpu_bf16_support()
        chosen = torch.bfloat16 if native else torch.float32
    log.info("model.dtype auto -> %s on %s: %s", str(chosen).removeprefix("torch."), device_type, why)
    return chosen
