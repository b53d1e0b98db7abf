"""gpuplace application layer: CLI, configuration, and the service that hosts the extender and webhook."""

__version__ = "0.1.0"
