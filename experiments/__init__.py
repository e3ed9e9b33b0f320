"""Experiments that train models end to end on the synthetic worlds of `experiments.synthetic` (`make proof`)."""
