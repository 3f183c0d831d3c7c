"""Sphinx configuration: numpydoc docstrings, Markdown pages through MyST."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import skcdc

project = "skcdc"
author = "the skcdc developers"
release = version = skcdc.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Offline builds: no inventories are fetched, so cross-references to other
# projects stay plain text rather than failing.
intersphinx_mapping = {}
html_theme = "alabaster"
html_title = f"skcdc {release}"
