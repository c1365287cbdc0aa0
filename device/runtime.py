"""The one TFLite runner: evaluation, the MLflow pyfunc and the device agent all call this.
Beside it the ONNX runner (ONNX Runtime, optional: only a device whose profile runs `onnx` needs
it) with the same predict contract; `open_runner` picks one from a bundle's target.

numpy + ai_edge_litert only (it runs on a Raspberry Pi). Full-integer models take int8/uint8
inputs and give int8/uint8 outputs; the runner quantises and dequantises with the tensor's own
scale and zero point so every caller passes normalized float32 and gets float32 probabilities.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from edgeops.errors import EdgeOpsError

_QUANTIZED = (np.int8, np.uint8, np.int16)


class RuntimeLoadError(EdgeOpsError):
    """The model file cannot be loaded or run by the LiteRT interpreter."""

    exit_code = 14


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale == 0:
        raise RuntimeLoadError(f"input tensor {detail['name']!r} is {dtype} but has no scale")
    info = np.iinfo(dtype)
    q = np.round(x / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail["quantization"]
    if scale == 0:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


def plain_interpreter(model: bytes, batch1: bool = True) -> Interpreter:
    """An allocated interpreter without the default XNNPACK delegate (which would fold the graph
    into one opaque node), optionally at batch 1: what op listing, cost counting and the
    arena measurement of both the pipeline and the device read."""
    interp = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    if batch1:
        inp = interp.get_input_details()[0]
        interp.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
    interp.allocate_tensors()
    return interp


def tensor_spans(interp: Interpreter, indices: Iterable[int]) -> tuple[int, int]:
    """(address span, summed bytes) of the allocated tensors among `indices`; (0, 0) if none.

    A span no larger than the sum means the planner laid the tensors out in one arena.
    """
    spans = []
    for i in indices:
        try:
            view = interp.tensor(i)()
        except ValueError:
            continue
        if view.nbytes:
            spans.append((view.ctypes.data, view.ctypes.data + view.nbytes, view.nbytes))
    if not spans:
        return 0, 0
    return max(e for _, e, _ in spans) - min(b for b, _, _ in spans), sum(n for _, _, n in spans)


class TFLiteRunner:
    """A loaded .tflite model. Safe to share between threads (one invoke at a time)."""

    def __init__(self, model: bytes | Path | str, num_threads: int = 1) -> None:
        where = "<bytes>" if isinstance(model, bytes) else str(model)
        try:
            self.model_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
            self._interp = Interpreter(model_content=self.model_bytes, num_threads=num_threads)
            self._interp.allocate_tensors()
        except (OSError, ValueError, RuntimeError) as exc:
            raise RuntimeLoadError(f"LiteRT cannot load the model: {exc}", where=where) from exc
        self.num_threads = num_threads
        self._lock = threading.Lock()
        self._batch = int(self.input_details[0]["shape"][0])

    @property
    def input_details(self) -> list[dict[str, Any]]:
        return self._interp.get_input_details()

    @property
    def output_details(self) -> list[dict[str, Any]]:
        return self._interp.get_output_details()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, without the batch dimension."""
        return tuple(int(d) for d in self.input_details[0]["shape"][1:])

    def tensor_dtypes(self) -> dict[str, Any]:
        """Input, output and every tensor's dtype: the int8-only check reads this."""
        tensors = sorted({np.dtype(t["dtype"]).name for t in self._interp.get_tensor_details()})
        return {
            "input": np.dtype(self.input_details[0]["dtype"]).name,
            "output": np.dtype(self.output_details[0]["dtype"]).name,
            "tensors": tensors,
        }

    def ops(self) -> list[dict[str, Any]]:
        """Each node's op name and the dtypes it reads and writes, as in the file.

        Read from an interpreter without the default XNNPACK delegate, which would otherwise
        fold the graph into one opaque DELEGATE node.
        """
        plain = plain_interpreter(self.model_bytes, batch1=False)
        return [
            {
                "op": d["op_name"],
                "inputs": [np.dtype(t).name for t in d["operand_types"]],
                "outputs": [np.dtype(t).name for t in d["result_types"]],
            }
            for d in plain._get_ops_details()
        ]

    def _resize(self, n: int) -> None:
        if n != self._batch:
            self._interp.resize_tensor_input(self.input_details[0]["index"], [n, *self.input_shape])
            self._interp.allocate_tensors()
            self._batch = n

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, classes) for normalized float32 inputs (N, H, W, C)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise RuntimeLoadError(f"input shape {x.shape[1:]} != model input {self.input_shape}")
        outs = []
        with self._lock:
            for start in range(0, len(x), batch_size):
                chunk = x[start : start + batch_size]
                self._resize(len(chunk))
                outs.append(self._invoke(chunk))
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, 0), np.float32)

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        inp, out = self.input_details[0], self.output_details[0]
        if np.dtype(inp["dtype"]) in [np.dtype(t) for t in _QUANTIZED]:
            chunk = _quantize(chunk, inp)
        else:
            chunk = chunk.astype(inp["dtype"])
        self._interp.set_tensor(inp["index"], chunk)
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(out["index"]), out)

    def invoke_raw(self) -> None:
        """One invoke on whatever the input holds: latency timing without conversion costs."""
        with self._lock:
            self._interp.invoke()

    def prepare_single(self, x: np.ndarray) -> None:
        """Set one sample as input (batch 1), quantised if needed, for repeated `invoke_raw`."""
        x = np.asarray(x, dtype=np.float32).reshape(1, *self.input_shape)
        with self._lock:
            self._resize(1)
            inp = self.input_details[0]
            if np.dtype(inp["dtype"]) in [np.dtype(t) for t in _QUANTIZED]:
                x = _quantize(x, inp)
            self._interp.set_tensor(inp["index"], x.astype(inp["dtype"]))


class ONNXRunner:
    """A loaded .onnx model (ONNX Runtime on the CPU), with the TFLite runner's predict contract.

    onnxruntime is an optional dependency of the agent, as LiteRT is: imported only when a bundle
    needs it, so a TFLite-only device never loads it and one without it says so in one line.
    """

    def __init__(self, model: bytes | Path | str, num_threads: int = 1) -> None:
        where = "<bytes>" if isinstance(model, bytes) else str(model)
        ort = _onnxruntime(where)
        try:
            self.model_bytes = model if isinstance(model, bytes) else Path(model).read_bytes()
            self._sess = ort.InferenceSession(
                self.model_bytes, _ort_options(ort, num_threads), providers=["CPUExecutionProvider"]
            )
        except _ort_errors() as exc:
            raise RuntimeLoadError(
                f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}", where=where
            ) from exc
        self.num_threads = num_threads
        self._lock = threading.Lock()
        self._input = self._sess.get_inputs()[0]
        dims = self._input.shape[1:]
        if not all(isinstance(d, int) for d in dims):
            raise RuntimeLoadError(f"model input has symbolic dimensions {dims}", where=where)
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in dims)

    def tensor_dtypes(self) -> dict[str, Any]:
        """Input and output dtypes (numpy names), as the int8-only check reads them."""
        inp = _ORT_DTYPES.get(self._input.type, self._input.type)
        out_t = self._sess.get_outputs()[0].type
        out = _ORT_DTYPES.get(out_t, out_t)
        return {"input": inp, "output": out, "tensors": sorted({inp, out})}

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, classes) for normalized float32 inputs (N, H, W, C)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise RuntimeLoadError(f"input shape {x.shape[1:]} != model input {self.input_shape}")
        outs = []
        with self._lock:
            for start in range(0, len(x), batch_size):
                try:
                    out = self._sess.run(None, {self._input.name: x[start : start + batch_size]})[0]
                except _ort_errors() as exc:
                    raise RuntimeLoadError(f"ONNX Runtime failed: {str(exc).splitlines()[0]}") from exc
                outs.append(np.asarray(out, np.float32))
        return np.concatenate(outs, axis=0) if outs else np.zeros((0, 0), np.float32)

    def arena_bytes(self) -> int:
        """Activation memory ONNX Runtime requested at batch 1, read from its own profiler
        (the peak of `mem_bytes_requested_in_use` over the nodes of one run)."""
        import json
        import tempfile

        ort = _onnxruntime("<bytes>")
        with tempfile.TemporaryDirectory(prefix="edgeops-ort-") as tmp:
            opts = _ort_options(ort, 1)
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / "profile")
            sess = ort.InferenceSession(self.model_bytes, opts, providers=["CPUExecutionProvider"])
            sess.run(None, {self._input.name: np.zeros((1, *self.input_shape), np.float32)})
            events = json.loads(Path(sess.end_profiling()).read_text())
        args = [e.get("args", {}) for e in events if e.get("cat") == "Node"]
        peak = max((int(a.get("mem_bytes_requested_in_use", 0)) for a in args), default=0)
        return peak or sum(int(a.get("output_size", 0)) for a in args)


_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
}


def _onnxruntime(where: str) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise RuntimeLoadError(
            "this device has no ONNX Runtime (onnxruntime is not installed)", where=where
        ) from exc
    onnxruntime.set_default_logger_severity(3)
    return onnxruntime


def _ort_errors() -> tuple[type[BaseException], ...]:
    """What onnxruntime raises (its own types, which are not RuntimeError) plus the usual ones."""
    from onnxruntime.capi import onnxruntime_pybind11_state as s

    own = ("Fail", "InvalidGraph", "InvalidArgument", "InvalidProtobuf", "RuntimeException", "NoSuchFile")
    return (OSError, ValueError, RuntimeError, *(getattr(s, n) for n in own if hasattr(s, n)))


def _ort_options(ort: Any, num_threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


Runner = TFLiteRunner | ONNXRunner
RUNTIMES = {"onnx": ONNXRunner}  # target -> runner; every tflite-* target runs in LiteRT


def open_runner(target: str, model: bytes | Path | str, num_threads: int = 1) -> Runner:
    """The runner for a bundle's target: LiteRT for `tflite-*`, ONNX Runtime for `onnx`."""
    if target.startswith("tflite"):
        return TFLiteRunner(model, num_threads)
    if target in RUNTIMES:
        return RUNTIMES[target](model, num_threads)
    where = "<bytes>" if isinstance(model, bytes) else str(model)
    raise RuntimeLoadError(f"the device agent has no runtime for target {target}", where=where)


def runnable_targets() -> tuple[str, ...]:
    """Targets the agent can run at all (whether this device may is its profile's business)."""
    return ("tflite-f32", "tflite-f16", "tflite-dynamic", "tflite-int8", *RUNTIMES)


def runner_for_file(path: Path | str, num_threads: int = 1) -> Runner:
    """By file suffix: ONNX Runtime for `.onnx`, LiteRT otherwise (a pipeline-side artifact)."""
    return open_runner("onnx" if Path(path).suffix == ".onnx" else "tflite", path, num_threads)
