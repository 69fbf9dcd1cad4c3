"""The package version, alone so that any layer can stamp it without importing the facade."""

__version__ = "0.2.0"
