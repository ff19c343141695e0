"""Operator tools: cache re-initialisation, benchmark and verify/repair, export-piece, supervisor-config."""
