"""Experiments that train models end to end on the synthetic worlds of `data_tools.synthetic` (`make proof`)."""
