"""The CUDA backend: the one kernel source compiled by numba-cuda, a batched record-encoding pipeline."""
