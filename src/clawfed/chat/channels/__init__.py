"""Chat channel implementations, one service per module."""
