"""Owns the data: converting datasets to TFRecords, KITTI's file format, and the input pipeline.

May import core.plan, core.build and core.errors; TensorFlow only in the modules that read or write records.
"""
