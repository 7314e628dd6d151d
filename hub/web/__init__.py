"""Pages served to people: the claim page a technician's phone opens from a box's QR code."""
