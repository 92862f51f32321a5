"""Local simulators of the upstreams and channels, for ``mrt-tui --demo`` and the tests."""
