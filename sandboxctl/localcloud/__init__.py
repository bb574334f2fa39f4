"""The embedded local cloud: moto in server mode, corrected toward AWS, running the template."""
