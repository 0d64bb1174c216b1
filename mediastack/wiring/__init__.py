"""The deploy-time wiring: a dynamic provider over the apps' own APIs."""
