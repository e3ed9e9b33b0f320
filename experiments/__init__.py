"""Research beside the product, in the source checkout only (not installed, like `bench/`): the synthetic worlds
(`experiments.synthetic`), the experiments that train models end to end on them (`make proof`), and the demo's
bundle and evaluation. Run a module from the checkout: `python -m experiments.<module>`.

The installed packages never import this package; they reach it by import path through `rlhfv.extensions`.
"""
