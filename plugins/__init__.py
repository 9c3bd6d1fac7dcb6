"""Bundled plugins. Each subpackage exposes ``plugin = Plugin(...)``."""
