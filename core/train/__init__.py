"""Owns a training run: the Run and its stages (training.py), the context hooks see (context.py),
the batches, session, trainer loop, optimizers, tf.distribute, checkpoints, resume.

May import every core layer but cli.
"""
