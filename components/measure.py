"""What a variant costs: bytes, weights, parameters, MACs, host latency, arena memory.

TFLite variants are measured from the file alone (the flatbuffer's graph and constants, LiteRT
for latency). ONNX and SavedModel variants take parameters, MACs and activations from the Keras
model they came from. The on-device latency is an ESTIMATE, never a measurement, and says so in
its name: this host's measured latency of the variant in its runtime (LiteRT, one thread, batch 1)
times the profile's calibration factor recorded in devices.yaml (`latency_calibration`), or, for a
profile without one, MACs over its nominal throughput.

This module owns `Measurement` and measures an artifact by target and path; it never imports
components.conversion (which owns `Variant` and imports this module).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from components.keras import keras
    from components.profiles import DeviceProfile

ARENA_TFLITE = (
    "LiteRT arena planner: address span of the activation tensors after allocate_tensors, "
    "batch 1, without the XNNPACK delegate (which keeps its own buffers)"
)
ARENA_LIVENESS = (
    "liveness of activation tensors in execution order, batch 1 (planner span unavailable)"
)
ARENA_KERAS = "largest layer input + output activations, batch 1 (Keras graph)"


@dataclass(frozen=True)
class Measurement:
    target: str
    bytes: int
    gzip_bytes: int
    weight_bytes: int
    parameters: int
    macs: int
    host_latency_ms: float  # median, one thread, batch 1
    host_latency_p90_ms: float
    latency_runs: int
    arena_bytes: int  # peak activation memory, an estimate: see arena_method
    arena_method: str
    # TFLite Micro (int8 files): the smallest arena that runs, top-1 agreement with LiteRT, or why not
    micro_arena_bytes: int | None = None
    micro_agreement: float | None = None
    micro_reason: str = ""
    wire_bytes: int | None = None  # the model file as a device downloads it (device.wire, zstd)
    # (new fields go last: records and callers build Measurement positionally)
    micro_min_agreement: float = 0.99  # the conversion's own parity gate (convert.min_agreement)
    micro_parity_split: str = ""  # the split micro_agreement was measured on ("validation"; "" if unrecorded)

    def estimated_latency_ms(self, profile: DeviceProfile) -> float:
        """On-device latency ESTIMATE: the host measurement scaled by the profile's calibration
        (so int8 and float variants differ as they do in their runtime), else MACs/throughput."""
        cal = profile.latency_calibration
        if cal is not None and math.isfinite(self.host_latency_ms):
            return self.host_latency_ms * cal.host_to_device
        return 1000.0 * self.macs / profile.throughput_macs_per_s

    def latency_basis(self, profile: DeviceProfile) -> str:
        """How estimated_latency_ms was reached, for the blessing and the tables."""
        cal = profile.latency_calibration
        if cal is not None and math.isfinite(self.host_latency_ms):
            return (f"estimate: host {self.host_latency_ms:.3f} ms (median of {self.latency_runs}, 1 thread) "
                    f"x {cal.host_to_device:g} ({profile.name} calibration: {cal.source})")
        return f"estimate: {self.macs} MACs / {profile.throughput_macs_per_s:g} MAC/s (no calibration)"

    def arena_for(self, profile: DeviceProfile) -> int | None:
        """The arena the profile's runtime needs: TFLite Micro's measured minimum where it runs."""
        return self.micro_arena_bytes if profile.runtime == "tflite-micro" else self.arena_bytes

    def runtime_reasons(self, profile: DeviceProfile, min_agreement: float | None = None) -> list[str]:
        """Why the profile's own runtime was not shown to run this variant (empty: it was).
        `min_agreement`: default, the parity gate the conversion ran under."""
        min_agreement = self.micro_min_agreement if min_agreement is None else min_agreement
        if profile.runtime == "edgetpu":
            return [f"{profile.name} needs an Edge TPU-compiled file; edgetpu_compiler is not "
                    "installable here, so no variant is blessed for it"]
        if profile.runtime != "tflite-micro":
            return []
        if self.micro_arena_bytes is None:
            return [f"not run in TFLite Micro ({self.micro_reason or 'no check recorded'})"]
        if self.micro_agreement is not None and self.micro_agreement < min_agreement:
            on = f" on {self.micro_parity_split} images" if self.micro_parity_split else ""
            return [f"TFLite Micro top-1 agreement with LiteRT {self.micro_agreement:.4f} < {min_agreement}{on}"]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _tflite_graph(
    data: bytes,
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]], set[int], list[int]]:
    """(ops, tensors by index, constant tensor indices, graph outputs) at batch 1, no delegate."""
    from ai_edge_litert import schema_py_generated as schema

    from device.runtime import plain_interpreter

    interp = plain_interpreter(data)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    const = set()
    for i in range(graph.TensorsLength()):
        buf = model.Buffers(graph.Tensors(i).Buffer())
        if buf is not None and (buf.DataLength() > 0 or buf.Size() > 0):
            const.add(i)
    outputs = [int(o["index"]) for o in interp.get_output_details()]
    return interp._get_ops_details(), tensors, const, outputs, interp


def _planned_span(interp: Any, tensors: dict[int, dict[str, Any]], const: set[int]) -> int | None:
    """Bytes between the lowest and highest activation address: what the planner laid out."""
    from device.runtime import tensor_spans

    span, total = tensor_spans(interp, (i for i in tensors if i not in const))
    if not total:
        return None
    return span if span <= total else None  # not one arena: do not guess


def _nbytes(t: dict[str, Any]) -> int:
    return (
        int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize
        if len(t["shape"])
        else np.dtype(t["dtype"]).itemsize
    )


def _op_macs(op: dict[str, Any], tensors: dict[int, dict[str, Any]]) -> int:
    name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
    if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(ins) < 2:
        return 0
    w, out = tensors[ins[1]]["shape"], tensors[outs[0]]["shape"]
    if name == "CONV_2D":  # filter [Cout, kh, kw, Cin]
        return int(np.prod(out)) * int(w[1] * w[2] * w[3])
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, Cout]
        return int(np.prod(out)) * int(w[1] * w[2])
    return int(np.prod(out)) * int(w[-1])  # FULLY_CONNECTED: filter [out, in]


def tflite_costs(data: bytes) -> dict[str, Any]:
    """Parameters, weight bytes, MACs and peak activation memory from a .tflite file."""
    ops, tensors, const, outputs, interp = _tflite_graph(data)
    params = sum(int(np.prod(tensors[i]["shape"])) for i in const if i in tensors)
    weight_bytes = sum(_nbytes(tensors[i]) for i in const if i in tensors)
    last_use: dict[int, int] = {}
    for step, op in enumerate(ops):
        for i in op["inputs"]:
            if int(i) >= 0:  # -1: an optional input left out (e.g. no bias)
                last_use[int(i)] = step
    for i in outputs:
        last_use[i] = len(ops)
    live: dict[int, int] = {}
    graph_inputs = [
        i for i in last_use if i not in const and all(i not in op["outputs"] for op in ops)
    ]
    for i in graph_inputs:
        live[i] = _nbytes(tensors[i])
    peak = sum(live.values())
    for step, op in enumerate(ops):
        for i in op["outputs"]:
            if int(i) in tensors:
                live[int(i)] = _nbytes(tensors[int(i)])
        peak = max(peak, sum(live.values()))
        for i in list(live):
            if last_use.get(i, -1) <= step:
                del live[i]
    macs = sum(_op_macs(op, tensors) for op in ops)
    planned = _planned_span(interp, tensors, const)
    return {
        "parameters": params,
        "weight_bytes": weight_bytes,
        "macs": macs,
        "arena_bytes": planned if planned is not None else peak,
        "arena_method": ARENA_TFLITE if planned is not None else ARENA_LIVENESS,
    }


def keras_costs(model: keras.Model) -> dict[str, Any]:
    """The same figures from the Keras graph, for targets whose files we cannot walk."""
    macs, arena = 0, 0
    for layer in model.layers:
        w = layer.get_weights()
        out = np.prod(layer.output_shape[1:]) if not isinstance(layer.output_shape, list) else 0
        ins = np.prod(layer.input_shape[1:]) if not isinstance(layer.input_shape, list) else 0
        arena = max(arena, int(4 * (ins + out)))
        kind = type(layer).__name__
        if kind in ("Conv2D", "Dense") and w:
            macs += int(out) * int(np.prod(w[0].shape[:-1]))
        elif kind == "DepthwiseConv2D" and w:
            macs += int(out) * int(np.prod(w[0].shape[:2]))
        elif kind == "SeparableConv2D" and w:
            hw = int(out) // layer.output_shape[-1]
            macs += hw * int(np.prod(w[0].shape[:3])) + int(out) * int(w[1].shape[2])
    weights = model.get_weights()
    return {
        "parameters": int(sum(v.size for v in weights)),
        "weight_bytes": int(sum(v.nbytes for v in weights)),
        "macs": macs,
        "arena_bytes": arena,
        "arena_method": ARENA_KERAS,
    }


def _runner(target: str, path: Path) -> Any:
    if target.startswith("tflite"):
        from device.runtime import TFLiteRunner

        return TFLiteRunner(path, num_threads=1)
    if target == "onnx":
        from components.convert.onnx import OnnxRunner

        return OnnxRunner(path, num_threads=1)
    if target == "openvino":
        from components.convert.openvino import OpenVinoRunner

        return OpenVinoRunner(path, num_threads=1)
    from components.convert.savedmodel import SavedModelRunner

    return SavedModelRunner(path)


def host_latency(
    target: str, path: Path | str, sample: np.ndarray, runs: int, warmup: int = 5
) -> tuple[float, float]:
    """(median, p90) milliseconds for one batch-1 inference on one thread, in its runtime."""
    runner = _runner(target, Path(path))
    x = np.asarray(sample, np.float32).reshape(1, *sample.shape[-3:])
    if hasattr(runner, "invoke_raw"):
        runner.prepare_single(x)
        call = runner.invoke_raw
    else:

        def call() -> None:
            runner.predict(x)

    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append(1000.0 * (time.perf_counter() - t0))
    return float(np.median(times)), float(np.percentile(times, 90))


def micro_costs(data: bytes, parity_inputs: np.ndarray, planner_arena: int) -> dict[str, Any]:
    """TFLite Micro's minimum arena and top-1 agreement with LiteRT on `parity_inputs`."""
    from components.micro import check_micro
    from device.runtime import TFLiteRunner

    reference = TFLiteRunner(data, num_threads=1).predict(parity_inputs)
    check = check_micro(data, parity_inputs, reference, planner_arena)
    return {"micro_arena_bytes": check.arena_bytes, "micro_agreement": check.agreement,
            "micro_reason": check.reason}


def measure_artifact(
    target: str,
    path: Path | str,
    sizes: tuple[int, int],
    sample: np.ndarray,
    runs: int = 50,
    model: keras.Model | None = None,
    parity_inputs: np.ndarray | None = None,
    min_agreement: float = 0.99,
    parity_split: str = "",
) -> Measurement:
    """Measure one verified artifact (`sizes`: its bytes and gzip bytes); `model` (its Keras
    source) is needed for non-TFLite targets. An int8 file with `parity_inputs` is also run in
    TFLite Micro (components.micro), held to `min_agreement` with LiteRT; `parity_split` names the
    split those inputs came from (the conversion gate's: validation). Wire bytes: the file as
    registry.bundles publishes it."""
    from device.wire import wire_size

    path = Path(path)
    if target.startswith("tflite"):
        data = path.read_bytes()
        costs = tflite_costs(data)
        costs["wire_bytes"] = wire_size(data)
        if target == "tflite-int8" and parity_inputs is not None and len(parity_inputs):
            costs |= micro_costs(data, parity_inputs, costs["arena_bytes"])
            costs["micro_min_agreement"] = min_agreement
            costs["micro_parity_split"] = parity_split
    elif model is not None:
        costs = keras_costs(model)
        if path.is_file():  # ONNX: one file, compressed on the wire like any bundle's model
            costs["wire_bytes"] = wire_size(path.read_bytes())
    else:
        raise ValueError(f"measuring {target} needs the Keras model it came from")
    median, p90 = host_latency(target, path, sample, runs)
    return Measurement(
        target=target,
        bytes=sizes[0],
        gzip_bytes=sizes[1],
        host_latency_ms=median,
        host_latency_p90_ms=p90,
        latency_runs=runs,
        **costs,
    )


def codebook_sizes(data: bytes) -> dict[str, int]:
    """Most distinct stored values in one output channel of each conv/dense weight tensor of a
    .tflite file: what clustering kept after conversion (BN folding and quantisation)."""
    ops, tensors, const, _, interp = _tflite_graph(data)
    axis = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": -1}
    out: dict[str, int] = {}
    for op in ops:
        ins = list(op["inputs"])
        if op["op_name"] not in axis or len(ins) < 2 or ins[1] not in const:
            continue
        w = np.moveaxis(np.asarray(interp.get_tensor(ins[1])), axis[op["op_name"]], 0)
        rows = w.reshape(w.shape[0], -1)
        out[tensors[ins[1]]["name"]] = max(len(np.unique(r)) for r in rows)
    return out
