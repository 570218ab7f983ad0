"""The ``tokenomy`` command: one module per command group."""
