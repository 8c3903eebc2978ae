"""From a file to a result: the reduced data written in the formats the programs read."""
