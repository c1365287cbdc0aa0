"""Prefect flows and tasks that wire components, registry and monitoring; MLflow logging lives here.

Prefect reads its settings when it is first imported, so two defaults are put in the environment
here, before any flow module imports prefect: no analytics calls (there is no internet), and
time for the ephemeral API to start on a loaded 2-core machine. The CLI also points PREFECT_HOME
under EDGEOPS_HOME before it runs a flow (see edgeops.cli.main). Variables a user sets win.
"""

import os

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}

for _key, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
