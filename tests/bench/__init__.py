"""Benchmarks (``make bench``): each measures callvault beside a baseline in one run and prints
its ratio as its last line. Not collected by pytest (files are ``bench_*.py``)."""
