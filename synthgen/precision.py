"""bf16 autocast where the hardware runs it natively, float32 elsewhere.

Every network in synthgen (generators, autoencoder, evaluate classifier) can run under
``torch.autocast(bfloat16)``. Whether that pays depends on the machine, not on the model:

- CPUs with AVX-512-BF16 or AMX (recent Xeon, AMD EPYC Zen 4+): bf16 convolutions are native, ~1.7x faster
  than float32 (``benchmarks/evaluate_classifier.py``).
- CPUs without them (AVX2 only: AMD EPYC Zen 2/3, older Xeon): oneDNN emulates bf16, **~13x slower** than
  float32 (same benchmark on an AVX2 EPYC: fp32 540 img/s, bf16 43 img/s, one thread).
- CUDA GPUs: native from Ampere on (``torch.cuda.is_bf16_supported()``).

So the config keys that switch autocast (``model.autocast``, ``autoencoder.autocast``,
``evaluate.classifier.bf16``) take ``true``, ``false`` or ``auto`` (the default): ``auto`` = bf16 exactly where
:func:`native_bf16` says the device has it. A run is still byte-identical to a rerun on the same machine; across
machines float results differ anyway (FMA and bf16 kernels round differently), and ``auto`` makes that explicit
by recording the precision that ran (``metrics/train.json``, ``metrics/evaluate.json``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError

#: The values a bf16 switch accepts in the config.
BF16_SETTINGS = (True, False, "auto")

_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
#: Where the kernel lists the CPU's flags (Linux), read only when torch lacks its probes.
CPUINFO = Path("/proc/cpuinfo")


@functools.lru_cache(maxsize=None)
def _cpu_native_bf16() -> bool:
    """True where this CPU has AVX-512-BF16 or AMX tiles (torch's own probes; /proc/cpuinfo if they are gone)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(p) for p in probes):
        return any(bool(p()) for p in probes)
    try:  # a torch without the private probes: read the kernel's flags (Linux)
        flags = CPUINFO.read_text().split()
    except OSError:
        return False
    return any(f in flags for f in _CPU_FLAGS)


@functools.lru_cache(maxsize=None)
def _cuda_native_bf16() -> bool:
    """True where the current CUDA device runs bf16 natively (Ampere and later)."""
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` (``"cpu"``, ``"cuda"``, ...) runs bf16 matmuls/convolutions natively."""
    if device_type == "cpu":
        return _cpu_native_bf16()
    if device_type == "cuda":
        return _cuda_native_bf16()
    return False


def bf16_setting(value: object, key: str) -> bool | str:
    """``value`` as a bf16 switch: ``True``, ``False`` or ``"auto"`` (numpy/OmegaConf bools become ``bool``).

    Raises:
        ConfigError: naming ``key``, when ``value`` is anything else.
    """
    if isinstance(value, str) and value == "auto":
        return "auto"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ConfigError(key, f"must be true, false or auto (bf16 where the device has it natively), got {value!r}")


def use_bf16(setting: bool | str, device_type: str = "cpu") -> bool:
    """Resolve a bf16 switch (``True``, ``False`` or ``"auto"``, see :func:`bf16_setting`) for ``device_type``."""
    if setting == "auto":
        return native_bf16(device_type)
    return bool(bf16_setting(setting, "bf16"))
