"""Sequence mixers shared by several models."""
