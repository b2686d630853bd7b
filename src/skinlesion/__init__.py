"""skinlesion: a reproducible ISIC dermoscopy pipeline from raw archive data to evaluation reports."""

__version__ = "0.1.0"
