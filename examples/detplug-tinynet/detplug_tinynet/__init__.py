"""detplug-tinynet: a tiny conv backbone (``tinynet``) and an ``epochs.jsonl`` logger for detplug.

Nothing is imported here: detplug imports the plugin modules its entry points
name (``detplug_tinynet.plugin``, ``detplug_tinynet.logger``), and the Keras
code only when a model is built.
"""

__version__ = "0.1.0"
