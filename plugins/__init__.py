"""Bundled plugins. Each subpackage holds a ``manifest.json`` and exposes ``plugin = Plugin(...)``
(see ``syncstream.plugins``); they import the core only through ``syncstream.sdk``."""
