"""Integrations with other packages. Each one is imported only where its package is
installed: nothing in ``rotating_tokens`` imports from here."""
