"""Reusable test parts, installed with the package: nothing here is imported by framebus itself."""
