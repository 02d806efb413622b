"""`python -m dlkit` runs the same CLI as the `dlkit` console script."""

from dlkit.cli import main

if __name__ == "__main__":
    main()
