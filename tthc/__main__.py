"""``python -m tthc`` is the ``tthc`` command."""

from tthc.cli import app

app()
