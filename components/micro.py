"""Check an int8 .tflite file in TFLite Micro, the runtime a Cortex-M device runs.

LiteRT's planner arena and XNNPACK's kernels are not what a microcontroller runs: TFLite Micro
has its own op resolver (op support), its own kernels (parity) and its own allocator, whose
arena also holds per-tensor structs and scratch buffers (the student needed 28,005 bytes against
the LiteRT planner's 26,624). The smallest arena that works is found by bisection on the real
interpreter (`tflite-micro` Python package), and blessing for a TFLite Micro profile uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeops.console import native_stderr_silenced

ALIGN = 16  # TFLM aligns arena allocations to 16 bytes: coarser bisection gains nothing


@dataclass(frozen=True)
class MicroCheck:
    """What TFLite Micro did with one file: ran or not (why), its arena, parity with LiteRT."""

    runs: bool
    reason: str
    arena_bytes: int | None = None  # smallest tensor arena with which allocation and invoke work
    agreement: float | None = None  # top-1 agreement with LiteRT on the same inputs
    max_abs_diff: float | None = None  # on dequantised outputs
    n: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _interpreter(model: bytes, arena: int) -> Any:
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model, arena_size=int(arena))


def _works(model: bytes, arena: int) -> bool:
    try:
        with native_stderr_silenced():  # TFLM reports each failed allocation on fd 2
            interp = _interpreter(model, arena)
            d = interp.get_input_details(0)
            interp.set_input(np.zeros(d["shape"], d["dtype"]), 0)
            interp.invoke()
    except RuntimeError:
        return False
    return True


def load_error(model: bytes, arena: int = 1 << 26) -> str | None:
    """None when TFLite Micro can build the graph with a generous arena; else its complaint."""
    try:
        with native_stderr_silenced():  # TFLM reports each failed allocation on fd 2
            _interpreter(model, arena)
    except (RuntimeError, ValueError, TypeError) as exc:  # unknown op, bad flatbuffer
        return f"TFLite Micro refused the model: {exc or type(exc).__name__}"
    return None


def minimum_arena(model: bytes, start: int = 4096, limit: int = 1 << 28) -> int:
    """Smallest arena (multiple of ALIGN) with which the interpreter allocates and invokes."""
    hi = max(ALIGN, start)
    while not _works(model, hi):
        if hi >= limit:
            raise RuntimeError(f"TFLite Micro does not run the model even with a {limit}-byte arena")
        hi *= 2
    lo = 0  # known to fail (or untested at zero)
    while hi - lo > ALIGN:
        mid = (lo + hi) // 2 // ALIGN * ALIGN
        if mid <= lo:
            break
        lo, hi = (lo, mid) if _works(model, mid) else (mid, hi)
    return hi


def micro_probs(model: bytes, x: np.ndarray, arena: int) -> np.ndarray:
    """Dequantised outputs for normalised float inputs (N, H, W, C), one image at a time."""
    interp = _interpreter(model, arena)
    din, dout = interp.get_input_details(0), interp.get_output_details(0)
    (s_in,), (z_in,) = din["quantization_parameters"]["scales"], din["quantization_parameters"]["zero_points"]
    qo = dout["quantization_parameters"]
    rows = []
    for img in np.asarray(x, np.float32):
        q = np.clip(np.round(img / s_in + z_in), -128, 127).astype(din["dtype"])
        interp.set_input(q[None], 0)
        interp.invoke()
        out = np.asarray(interp.get_output(0)).astype(np.float32)
        if np.issubdtype(dout["dtype"], np.integer) and len(qo["scales"]):
            out = (out - qo["zero_points"][0]) * qo["scales"][0]
        rows.append(out.reshape(-1))
    return np.stack(rows)


def check_micro(model: bytes, x: np.ndarray, reference: np.ndarray, planner_arena: int | None = None) -> MicroCheck:
    """Run `model` in TFLite Micro: op support, the smallest working arena, parity with
    `reference` (LiteRT's dequantised outputs on the same normalised inputs `x`)."""
    if (err := load_error(model)) is not None:
        return MicroCheck(False, err)
    arena = minimum_arena(model, start=planner_arena or 4096)
    probs = micro_probs(model, x, arena)
    ref = np.asarray(reference, np.float32)
    agreement = float((probs.argmax(axis=1) == ref.argmax(axis=1)).mean()) if len(ref) else float("nan")
    diff = float(np.abs(probs - ref).max()) if len(ref) else float("nan")
    return MicroCheck(True, "ran in TFLite Micro", arena, agreement, diff, len(ref))
