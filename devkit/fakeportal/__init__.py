"""A fake of the source systems for demos, tests and benchmarks: the export HTTP API (``server``), a generator
of dossiers in the national sync shape (``generate``) and a one-stop SQL replica loader (``replica``)."""
