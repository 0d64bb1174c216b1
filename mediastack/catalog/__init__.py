"""The catalog: one entry per service, and the facts about the images they run."""
