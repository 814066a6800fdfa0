"""Metadata engine on Redis: the POSIX namespace as Redis Functions, one round trip per operation."""
