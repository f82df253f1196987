"""Replay: load case sets, time implementations on them, check every output, write results and tables."""
