"""Runnable demonstrations above every other room: `workbench demo` (transport toggles, `transport`) and the
cache walk-through (`cache_hits`). They use the client, the cache and the simulator together, so they live
here rather than inside any of them (the cache must not import the client)."""
