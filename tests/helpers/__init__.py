"""What the tests share: paths, the test environment, the one tiny-run setting, running entry points
in subprocesses, and probe callbacks those runs load (`+callbacks.probe._target_=helpers.probes.X`;
tests/ is on the children's PYTHONPATH)."""
