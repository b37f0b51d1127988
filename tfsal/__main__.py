"""`python -m tfsal`: the `tfsal` command."""

from tfsal.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
