"""Owns the plan: reading the file, params, settings, specs and the static check.

Imports only the standard library, attrs and core.errors: never TensorFlow, nor the
registry (plan_file.ComponentLookup is what it needs of it).
"""
