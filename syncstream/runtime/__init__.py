"""Performance seams: each module here is one place where the server reaches past a library's
public API (or tunes the interpreter) for speed, behind a switch in the ``runtime`` settings
section. A seam that depends on a library's internals checks them when the server starts
(:class:`syncstream.runtime.seams.Seams`): if the library changed, it falls back to the public
API (or, with none, refuses what needs it with the reason) and says so in the log and the
``syncstream_runtime_seam_active`` metric; a contract test in ``tests/test_runtime_seams.py``
fails in CI on the same change.
"""
