"""Version checks for seams written against a library's internals."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def release(package: str) -> tuple[int, ...]:
    """``package``'s installed version as numbers (``(1, 16, 0)``); () when unknown."""
    try:
        text = version(package)
    except PackageNotFoundError:
        return ()
    numbers: list[int] = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part else ""
        if not digits or not part[0].isdigit():
            break
        numbers.append(int(digits))
        if not part.isdigit():
            break
    return tuple(numbers)


def outside(package: str, low: tuple[int, ...], below: tuple[int, ...]) -> str | None:
    """Why ``package`` is not a release the seam was checked against (None: it is)."""
    have = release(package)
    if low <= have < below:
        return None
    shown = ".".join(map(str, have)) or "unknown"
    return (
        f"{package} {shown} is outside the releases this seam was checked against "
        f"({'.'.join(map(str, low))} up to {'.'.join(map(str, below))})"
    )
