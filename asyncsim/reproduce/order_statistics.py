"""Placeholder: this reproduction is being written."""
