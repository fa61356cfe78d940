"""The OCI runtime library: bundle -> isolated, resource-limited container.

``container`` holds the verbs (create, start, state, kill, delete, exec, ...);
``setup`` is the sequence the forked child runs; ``mountplan`` and ``secjoin``
are the pure planning parts; ``linux`` is the one seam every syscall goes
through, so tests can record the order of operations without root.
"""
