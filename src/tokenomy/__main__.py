"""``python -m tokenomy``: the same as the ``tokenomy`` command."""

from tokenomy.cli.main import main

if __name__ == "__main__":
    main()
