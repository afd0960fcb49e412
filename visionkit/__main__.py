"""``python -m visionkit``: the same command line as the ``visionkit`` console script."""

from visionkit.cli import main

if __name__ == "__main__":
    main()
