"""The version of imagerec, stamped into saved files, catalogs and the service's OpenAPI document.

>>> __version__.count(".") >= 2
True
"""

__version__ = "0.1.0"
