"""Datasets for DiffAE Studio; ``synthfaces`` is the procedural SynthFaces generator."""
