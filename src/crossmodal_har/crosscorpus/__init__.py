"""The cross-corpus pairs study (issue 24, item 5): retrieval from one simulated corpus to another, pair by
pair and per video side, with what about each pair could explain the spread (``study``, ``descriptors``)."""
