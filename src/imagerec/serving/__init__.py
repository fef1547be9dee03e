"""The HTTP service: ``imagerec serve`` and :func:`create_app`.

>>> from imagerec.serving import ServeConfig
>>> ServeConfig(max_batch=8).max_batch
8
"""

from .app import create_app, load_models
from .config import ServeConfig, read_api_keys

__all__ = ["create_app", "load_models", "ServeConfig", "read_api_keys"]
