"""Sphinx configuration of the documentation site (``bash scripts/docs.sh`` builds it).

The pages are Markdown (MyST); the reference pages are generated from the code by
``docs/_ext/rt_reference.py``, which imports the app, so Django is set up first with
the example project's settings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "docs_settings")
import django  # noqa: E402

django.setup()

import rotating_tokens  # noqa: E402

project = "django-rotating-tokens"
author = "django-rotating-tokens developers"
copyright = "django-rotating-tokens developers"
release = rotating_tokens.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "rt_reference",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "screenshots/*.md"]
templates_path: list[str] = []
html_static_path: list[str] = []

html_theme = "furo"
html_title = f"django-rotating-tokens {release}"

myst_enable_extensions = ["colon_fence", "deflist", "fieldlist", "attrs_inline"]
# Headings up to ### get anchors, so pages link to each other's sections
# ([text](../howto/deploy.md#the-cache)); a link to an anchor or a page that does not
# exist is a warning, and scripts/docs.sh fails on warnings.
myst_heading_anchors = 3
myst_all_links_external = False

# Every unresolved cross-reference is a warning (-n), and -W makes it an error.
nitpicky = True

# Django's and DRF's docs publish Sphinx inventories; Read the Docs reaches them. On a
# machine without internet access (CI here), they are off: RT_DOCS_OFFLINE=1, and the
# references to Django, DRF and simplejwt objects in signatures stay plain text.
OFFLINE = os.environ.get("RT_DOCS_OFFLINE") == "1"
intersphinx_mapping = (
    {}
    if OFFLINE
    else {
        "python": ("https://docs.python.org/3", None),
        "django": (
            "https://docs.djangoproject.com/en/stable/",
            "https://docs.djangoproject.com/en/stable/_objects/",
        ),
    }
)
nitpick_ignore_regex = [
    # Third-party types in signatures: linked through intersphinx where it runs, plain
    # text otherwise (DRF and simplejwt publish no inventory).
    ("py:.*", r"(django|rest_framework|rest_framework_simplejwt|allauth|datetime|uuid)\..*"),
    ("py:.*", r"(HttpRequest|Request|Response|JsonResponse|APIException|AbstractBaseUser)"),
    ("py:.*", r"(Any|Callable|Iterable|Mapping|Sequence|Self|QuerySet\[.*\]|_T)"),
    ("py:class", r"(timedelta|datetime|UUID|QuerySet|HttpResponseBase|collections\.abc\..*)"),
]

autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}
