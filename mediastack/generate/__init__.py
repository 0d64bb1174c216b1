"""Configuration generated for other programs: Prometheus, Alertmanager, Grafana, Traefik, app seeds."""
