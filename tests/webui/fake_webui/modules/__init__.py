"""Fake A1111 `modules` package for the glue tests (see ../README.md)."""
