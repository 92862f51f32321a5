"""mrt-tui: the operator console of the Model Release Tracker (Textual)."""
