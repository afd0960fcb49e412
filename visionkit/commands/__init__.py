"""Click command groups of the visionkit command line, one module per group."""
