"""Which engine runs by default on this machine, and what the CPU offers.

The rule (:func:`default_engine`), decided from ``emoctx predict`` measured end to end per engine:

* a GPU: ``torch`` with AMP (bf16, or fp16 where the GPU has no bf16); not measured against the exported
  engines (they run on the CPU only);
* a CPU with native bf16 (AVX512-BF16 or AMX): ``openvino`` in bf16 where OpenVINO is installed (the
  ``openvino`` extra), else ``torch`` in bf16 (bf16 weights, BN folded, conv+ReLU fused);
* a CPU without native bf16: ``onnxruntime`` in fp32.

An explicit precision keeps the rule's engine where it can: ``fp32`` on a CPU is ``onnxruntime``, ``bf16``
``openvino`` (else ``torch``), ``int8`` ``openvino`` (else ``onnxruntime``).

The figures it rests on (``scripts/bench.py``, the ResNet-18 pair: body @128 + scene @224; 200 EMOTIC-synth
640x480 JPEGs with 546 persons, boxes given, median of 3 alternating rounds, each run on the 2-core AMD EPYC
with AVX-512, AVX512-BF16 and VNNI; the README's Performance section has the tables):

* with native bf16: OpenVINO bf16 188.5 persons/s end to end, PyTorch bf16 197.8 on the quiet machine (equal
  within the noise; OpenVINO's model floor 1.23x PyTorch's); 99.6 against 61.2 (1.63x) at load average
  1.3-2.7, and 1.79x and 1.59x at load average 5-6: OpenVINO holds up under load;
* fp32 (standing in for a CPU without native bf16, which was not available to measure): ONNX Runtime 135.5
  persons/s, OpenVINO 129.8, PyTorch 121.1 on the quiet machine (1.12x and 1.07x); 67.0, 55.2 and 36.9 under
  load (1.82x and 1.50x). ONNX Runtime is a dependency of emoctx and the faster of the two in fp32, so it is
  the rule there. Earlier,
  on an AMD EPYC without native bf16 (Zen 3, AVX2), the model floor at batch 32 gave ONNX Runtime fp32 1.59x
  PyTorch eager fp32 and OpenVINO fp32 1.55x, outputs equal to 1.2e-7.

int8 is never chosen by default: it changes the outputs (within :data:`emoctx.engines.base.TOLERANCES`; up to
0.22 in one person's probability on EMOTIC-synth, with mAP unchanged) and needs calibration images; ask for it
with ``precision="int8"`` (on the quiet machine: ONNX Runtime int8 277.8 persons/s and OpenVINO int8 268.5
end to end, 2.29x and 2.22x PyTorch fp32).
"""

from __future__ import annotations

import functools

import torch

CPU_FLAGS: tuple[str, ...] = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
)
"""The CPU features that decide what is fast: AVX2/AVX-512 (fp32), AVX512-BF16/AMX-BF16 (native bf16),
AVX512-VNNI/AVX-VNNI/AMX-INT8 (int8 dot products)."""


@functools.lru_cache(maxsize=1)
def cpu_flags() -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` this CPU has (all False where ``/proc/cpuinfo`` cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        line = ""
    present = set(line.split(":", 1)[-1].split())
    return {flag: flag in present for flag in CPU_FLAGS}


def has_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (VNNI or AMX-INT8)."""
    flags = cpu_flags()
    return flags["avx512_vnni"] or flags["avx_vnni"] or flags["amx_int8"]


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (:func:`emoctx.hardware.cpu_supports_bf16`)."""
    from emoctx import hardware

    return hardware.cpu_supports_bf16()


def default_engine(device: str | torch.device | None = "cpu", precision: str = "auto") -> tuple[str, str]:
    """``(engine, precision)`` to run on ``device`` by default (the rule and its figures: the module docstring).

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"``/``None`` (a GPU when there is one).
        precision: the precision asked for (``"auto"``: the engine's default on this machine).
    """
    from emoctx.hardware import resolve_device

    device = resolve_device(device)
    if device.type != "cpu":
        return ("torch", precision)
    openvino = have_openvino()
    if precision == "int8":
        return ("openvino" if openvino else "onnxruntime", "int8")
    if precision == "bf16" or (precision == "auto" and native_bf16()):
        return ("openvino" if openvino else "torch", "bf16")
    return ("onnxruntime", "fp32")


def have_openvino() -> bool:
    """Whether the optional OpenVINO runtime is installed (``pip install 'emoctx[openvino]'``)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def resolve_precision(engine: str, precision: str, device: torch.device) -> str:
    """The precision ``"auto"`` stands for with ``engine`` on ``device`` (other values as given).

    torch and openvino: bf16 where the hardware computes it natively (torch on a GPU: its autocast type),
    else fp32; onnxruntime: fp32 (ONNX Runtime has no fast bf16 kernels on CPUs).
    """
    if precision != "auto":
        return precision
    if engine == "onnxruntime":
        return "fp32"
    if device.type != "cpu":
        return "auto"  # torch picks bf16 or fp16 by the GPU
    return "bf16" if native_bf16() else "fp32"


def default_detector_engine(device: str | torch.device | None = "cpu") -> str:
    """The engine the person detector runs fastest in on ``device`` (:func:`emoctx.engines.detector.export_detector`).

    On a GPU, PyTorch (ultralytics' own). On a CPU, OpenVINO where it is installed, else ONNX Runtime: measured
    side by side (``scripts/bench.py``, yolo11n at 640, batch 8, on the 2-core AMD EPYC with native bf16),
    OpenVINO ran at 4.2x PyTorch and ONNX Runtime at 2.4x. (ultralytics runs an OpenVINO detector in
    OpenVINO's default precision: bf16 on CPUs with native bf16, fp32 elsewhere.)
    """
    from emoctx.hardware import resolve_device

    if resolve_device(device).type != "cpu":
        return "torch"
    return "openvino" if have_openvino() else "onnxruntime"
