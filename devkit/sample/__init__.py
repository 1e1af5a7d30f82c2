"""Sample inbox generator: a realistic inbox for one invented province, in every format of docs/sources.md."""

from devkit.sample.inbox import generate_inbox

__all__ = ["generate_inbox"]
