"""Owns the detector: assembling the Keras model from components, losses, box maths, inference.

May import core.plan, core.build, core.data and core.errors.
"""
