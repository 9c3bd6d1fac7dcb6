from .cli import main

# Guarded: worker processes started with "spawn" import the main module again, and must not
# run a second server when the node was started as `python -m syncstream`.
if __name__ == "__main__":
    raise SystemExit(main())
