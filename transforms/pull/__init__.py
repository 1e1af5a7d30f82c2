"""Pulling sources: the export HTTP API (``http``), the one-stop SQL replica (``sql``), pull windows and
watermarks (``window``), and the glue into the raw -> staging path (``run``). Prefect-free."""
