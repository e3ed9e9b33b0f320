"""Benchmarks of Dense DPO against its peers: loss head, training step, reference precompute, converter, GPU.

Run them with `make bench [BENCH=name] [ARGS=--quick]` or `rlhfv bench`; results land in `bench/results/`.
"""
