"""Decoder workers: PyAV decodes a source straight into a stream's ring."""
