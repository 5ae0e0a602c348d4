"""Generator networks and their Lightning modules."""
