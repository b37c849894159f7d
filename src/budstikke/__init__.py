"""budstikke: a self-hosted notifications service for messages that cannot wait."""

__version__ = "0.1.0"
