"""Load testing: traffic generator, drivers and reports."""
