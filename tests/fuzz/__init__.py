"""Mutation fuzzing of every file reader (``make fuzz``; a bounded run is part of the test suite)."""
