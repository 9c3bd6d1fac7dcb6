"""``python -m syncstream.docs [--check]``: rewrite the generated pages of ``docs/``, or with
``--check`` exit 1 naming those that are out of step."""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import ROOT, pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncstream.docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in asyncio.run(pages()).items():
        target = ROOT / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(path))
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    verb = "out of step" if args.check else "written"
    for name in stale:
        print(f"{name}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
