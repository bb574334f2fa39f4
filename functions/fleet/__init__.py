"""Code shared by the control-plane functions (and the operator CLI): names, signing, models."""
