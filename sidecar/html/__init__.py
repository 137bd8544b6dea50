"""Sessions as HTML: the pages of the web viewer and of the static export (`export --html`).
Needs the `web` extra (Jinja2, markdown-it-py); the daemon never imports it."""

from sidecar.html.export import export_site
from sidecar.html.pages import Pages, Part, Site

__all__ = ["Pages", "Part", "Site", "export_site"]
