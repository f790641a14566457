"""Chat layer: WeCom and other chat channels, callback crypto, commands and reports."""
