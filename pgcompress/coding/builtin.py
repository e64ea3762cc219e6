"""The built-in codecs: importing this module registers them (each module registers its own).

CODEC_ORDER is the order ``codec_names`` lists them in, which is the order ``choose_codec`` tries
them and so breaks ties between blobs of equal size: it decides bytes, so it is data here rather
than the order of the imports. Codecs registered elsewhere (plugins, tests) follow, in
registration order.
"""

from pgcompress.coding import bitpack, byteplane, generic, rans, rans_ctx2  # noqa: F401

CODEC_ORDER = ("raw", "zlib", "lzma", "brotli", "zstd", "bitpack", "planes+brotli", "planes+lzma", "rans",
               "rans-ctx2")
