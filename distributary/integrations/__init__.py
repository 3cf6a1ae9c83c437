"""Glue between distributary and other libraries: storage options for fsspec backends, cloud credentials."""
