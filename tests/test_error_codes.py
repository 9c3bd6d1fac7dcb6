"""One registry of error codes: every code the source makes (read with ``ast``, see
``error_code_sites``) is registered by its owner — the core in ``syncstream/error_codes.py``,
a plugin in its ``Plugin(error_codes=...)`` — with the statuses it is made with, and every
registered code is made somewhere."""

from __future__ import annotations

import re

from syncstream.docs import registered_codes

from .error_code_sites import scan

OWNERS = registered_codes()
SITES = scan()


def test_every_owner_with_codes_is_scanned() -> None:
    assert set(OWNERS) <= set(SITES)
    assert {"core", "chess", "files", "media"} <= set(OWNERS)


def test_no_code_is_registered_twice_by_an_owner_or_beside_the_core() -> None:
    core = {entry.code for entry in OWNERS["core"]}
    for owner, entries in OWNERS.items():
        codes = [entry.code for entry in entries]
        assert len(codes) == len(set(codes)), f"{owner} registers a code twice"
        if owner != "core":
            assert not core & set(codes), f"{owner} re-registers core codes: {core & set(codes)}"


def test_every_code_made_is_registered_with_its_statuses() -> None:
    core = {entry.code: entry for entry in OWNERS["core"]}
    missing = []
    for owner, sites in SITES.items():
        registry = {**core, **{entry.code: entry for entry in OWNERS.get(owner, ())}}
        for code, statuses in sorted(sites.codes.items()):
            entry = registry.get(code)
            if entry is None:
                missing.append(f"{owner}: {code} is not registered")
            elif not statuses <= set(entry.statuses):
                missing.append(f"{owner}: {code} is made with {sorted(statuses)}, "
                               f"registered with {list(entry.statuses)}")  # fmt: skip
        for pattern in sites.patterns:
            if not any(re.fullmatch(pattern, code) for code in registry):
                missing.append(f"{owner}: nothing registered matches {pattern}")
    assert not missing, "register these in syncstream/error_codes.py or the plugin's:\n" + (
        "\n".join(missing)
    )


def test_every_registered_code_is_made_somewhere() -> None:
    made_anywhere = {code for sites in SITES.values() for code in sites.codes}
    unused = []
    for owner, entries in OWNERS.items():
        sites = SITES[owner]
        made = made_anywhere if owner == "core" else set(sites.codes)
        for entry in entries:
            matched = any(re.fullmatch(p, entry.code) for p in sites.patterns)
            if entry.code not in made and not matched:
                unused.append(f"{owner}: {entry.code}")
    assert not unused, "registered but never made:\n" + "\n".join(unused)


def test_meanings_are_one_line() -> None:
    for owner, entries in OWNERS.items():
        for entry in entries:
            assert entry.meaning and "\n" not in entry.meaning, (owner, entry.code)
