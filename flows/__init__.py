"""Prefect flows and tasks that wire components, registry and monitoring; MLflow logging lives here.

Prefect reads its settings when it is first imported, so two defaults are put in the environment
here, before any flow module imports prefect: no analytics calls (there is no internet), and
time for the ephemeral API to start on a loaded 2-core machine. MLflow's usage telemetry (on by
default in MLflow 3) is off for the same reason: a release pipeline does not phone home. The CLI also points PREFECT_HOME
under EDGEOPS_HOME before it runs a flow (see edgeops.cli.main). Variables a user sets win.

Third-party log noise (absl, TensorFlow's Python loggers, import-time warnings) is cut here too,
for the same reason: a worker's flow-run process imports this package before any flow module,
and this is the one entry all of them share (see flows.logs). It configures logging only; it
creates no client and touches no file.
"""

import os

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}

for _key, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)

from flows.logs import quiet_third_party  # noqa: E402 (after the defaults above, on purpose)

quiet_third_party()
