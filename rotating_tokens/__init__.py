"""Rotating refresh tokens with reuse detection for Django REST framework."""

__version__ = "0.1.0"
