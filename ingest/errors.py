"""Errors that reject one input file without stopping the run."""


class LoadError(Exception):
    """A file cannot be ingested; the message is the reason shown to the user."""
