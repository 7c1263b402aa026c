"""Detectors: one module per detector and an explicit registry (see DESIGN.md "Detectors")."""
