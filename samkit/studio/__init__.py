"""samkit studio: the data engine's assisted-manual and semi-automatic stages, as a local web app.

``create_app(StudioConfig(images_dir, out_dir), model=model)`` is an ASGI app (``samkit studio``
serves it with uvicorn); the page in ``static/`` talks to the JSON API of docs/studio/API.md.
"""

from samkit.studio.app import create_app
from samkit.studio.state import StudioConfig

__all__ = ["create_app", "StudioConfig"]
