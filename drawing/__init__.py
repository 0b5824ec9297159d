"""Pictures of attention (overlays, contact sheets): a leaf that every layer may use."""
