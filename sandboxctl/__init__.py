"""sandbox-fleet operator CLI and the embedded local cloud."""
