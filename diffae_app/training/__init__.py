"""Shared pieces of the training scripts in train/: data, resumable state, EMA, the loop.

Imported only by training code; needs the training extras (accelerate, tensorboard, lmdb).
"""
