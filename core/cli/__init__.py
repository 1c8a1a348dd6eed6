"""Owns the commands: parsing (subcommands and the older flags), listing, the use commands.

May import every core layer; nothing imports it but run.py.
"""
