"""``vaekit explore``: an interactive latent-space explorer in the browser.

- ``explorer``: the model side (``Explorer``: codes, map, decoding, scoring), torch only;
- ``requests``: validation of everything a client sends;
- ``app``: the Starlette app and its guard (host, token, body size), served by uvicorn;
- ``static/``: the page (plain HTML, CSS and JavaScript; no libraries, nothing fetched at run time).

Only ``app`` needs the ``explore`` extra (``pip install vaekit[explore]``).
"""

from vaekit.explore.explorer import Explorer

__all__ = ["Explorer"]
