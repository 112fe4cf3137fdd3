"""Real peers for development and tests: gateways started on loopback and stopped by PID."""
