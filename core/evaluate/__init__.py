"""Owns evaluation: the evaluator contract, KITTI label/result folders, detections on a split.

May import core.plan, core.build, core.data, core.model and core.errors; the contract imports no TensorFlow.
"""
