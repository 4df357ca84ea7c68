"""Objectives as small pure functions, each term separately (and separately tested)."""
