"""Owns the plan: reading the file, params, settings, specs and the static check.

Imports only the standard library, attrs, the registry and core.errors: never TensorFlow.
"""
