"""Notebooks for data scientists: they call package APIs only and are executed by `make test` (nbmake).
This package marker lets import-linter enforce that no product code imports them."""
