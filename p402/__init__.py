"""p402: an AI budget gateway that decides before the provider is called."""

__version__ = "0.1.0"
__all__ = ["__version__"]
