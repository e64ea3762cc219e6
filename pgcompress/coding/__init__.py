"""Stream codecs. ``pgcompress.coding.builtin`` imports the built-in ones, which register themselves."""
