"""Liveness, readiness and a detailed health report."""
