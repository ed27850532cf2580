"""effdl: a reproducible companion to ten papers on efficient deep learning and systems."""
__version__ = "0.1.0"
