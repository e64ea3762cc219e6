"""What a generated decoder runs: ``decode(data)``, the library's own container walk.

``decoder.py`` copies ``decode`` and everything it reaches (format.decode_artifact and its
checks, the codecs' ``decode_fn`` and the methods' ``decode_fn``) into one file, and emits
``CODECS`` and ``METHODS`` from the registry, keeping only the entries its artifact uses. The
tables here stay empty: in the library, ``unpack`` runs the same walk with the registry.
"""

from pgcompress.format import decode_artifact

CODECS = {}
METHODS = {}


def decode(data):
    """artifact bytes -> {name: tensor}, the dequantized state dict (what ``pgc unpack`` gives)."""
    return decode_artifact(data, "artifact", CODECS, METHODS)
