"""What the tests share that is not a test: servers that misbehave on purpose, sites, the
reference matcher."""
