"""Transport: ZeroMQ and msgpack. The envelope codec, the broker, the pure scheduler, the
control RPC and CURVE keys; it moves bytes and knows no agents (tests/unit/test_layers.py)."""

# A namespace of modules, each with its own __all__; nothing is re-exported here.
__all__: list[str] = []
