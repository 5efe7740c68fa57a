"""n3seq_image: the N³ image adapter (patches, windows, N3Block2d, DnCNN, N3Net)."""

from n3seq_image.dncnn import DnCNN

__all__ = ["DnCNN"]
