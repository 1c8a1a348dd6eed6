"""Owns a training run: session, trainer loop, optimizers, tf.distribute, checkpoints, resume.

May import every core layer but cli.
"""
