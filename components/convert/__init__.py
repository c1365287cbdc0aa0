"""One module per target family (tflite, onnx, savedmodel) plus verify: the output check.

The public entry point is `components.conversion.convert_and_verify`.
"""
