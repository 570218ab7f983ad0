"""``python -m tokenomy.mock``: the ``mock-upstream`` command without the main CLI."""

from tokenomy.mock.cli import mock_upstream_command

if __name__ == "__main__":
    mock_upstream_command(prog_name="python -m tokenomy.mock")
