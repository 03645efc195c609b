"""Rotating refresh tokens with reuse detection for Django REST framework."""

__version__ = "0.2.0.dev0"
