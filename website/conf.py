"""Sphinx configuration of the course website; `make site` (website/build.py) writes the sources it reads."""

project = "SFT course"
author = "SFT course authors"
copyright = "SFT course authors"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The notebooks are committed executed: render their stored outputs, never run them.
nb_execution_mode = "off"
nb_output_stderr = "show"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_title = "Supervised fine-tuning, hands on"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
html_last_updated_fmt = None
# Offline: Sphinx's default MathJax comes from a CDN; sphinx-mathjax-offline (a PyPI wheel with MathJax 3)
# copies it into _static/mathjax and points the pages with math at that copy.

# Without these, every page logs a console error: the theme's first visit finds no stored colour mode, and
# the browser asks for /favicon.ico.
html_context = {"default_mode": "auto"}
html_favicon = "favicon.svg"
