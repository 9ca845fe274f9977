"""Fake A1111 1.10.1 `modules` package (see ../README.md)."""
