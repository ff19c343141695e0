"""The development network: the dev node, the supervisor, and `autonomys-farmer dev`."""
