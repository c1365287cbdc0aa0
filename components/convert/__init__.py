"""One module per target family (tflite, onnx, savedmodel, openvino) plus verify: the output check.

The public entry point is `components.conversion.convert_and_verify`.

EXPORT_LOCK serialises the step that traces a Keras model (TFLiteConverter.from_keras_model,
tf2onnx, tf.saved_model.save): run concurrently on one model they race on lazily created
variables ("Found 1 Python objects that were not bound to checkpointed values: iteration:0").
Verification and measurement, the larger share of the work, still run in parallel.
"""

import threading

EXPORT_LOCK = threading.RLock()
