"""The `edgeops` command line: the top floor. One module per command group; each imports the
packages below it (flows, registry, monitoring, components, device) and `edgeops` core (errors,
params, settings, console), and nothing below imports from here."""
