"""Built-in loggers, each a plugin module of its own that implements the training hooks
exactly as a third-party logger would: csv_history (history.csv) and tensorboard."""
