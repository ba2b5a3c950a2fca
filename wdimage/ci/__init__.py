"""What CI produces: the build matrix and release assets."""
