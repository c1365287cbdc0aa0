"""The on-device agent, the wire protocol it speaks and the fleet simulator.

Imports only numpy, ai-edge-litert, cryptography, boto3 and pyarrow: it runs on a Raspberry Pi.
"""

AGENT_VERSION = "0.1.0"
