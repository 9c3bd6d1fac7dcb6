"""SyncStream: a self-hosted streaming and realtime backend.

Plugin authors import from :mod:`syncstream.sdk` only; the rest of the package is private.
"""

__version__ = "0.1.0"
