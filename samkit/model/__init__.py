"""The SAM 2 network, one concept a file."""
