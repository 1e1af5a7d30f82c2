"""Development kit: the tools that make data for demos, tests and benchmarks, kept out of the product.

- ``devkit.sample``: the sample inbox generator (``tthc sample``) and the bulk flat-export writer (``bulk``);
- ``devkit.fakeportal``: the fake export API and one-stop SQL replica (``tthc fake-portal``);
- ``devkit.synth``: synthetic staged dossier batches for the quality gate's tests and bench.

Not part of the installed product: the wheel ships ``tthc``, ``flows``, ``transforms``, ``expectations`` and
``warehouse`` only. A development install from a clone (``pip install -e '.[dev]'``, what ``make install`` does)
puts the clone on the import path, so ``devkit`` is importable there. The product never imports it; only the CLI
commands ``tthc sample`` and ``tthc fake-portal`` do, inside the command (``tthc.commands.devkit_module``).
"""
