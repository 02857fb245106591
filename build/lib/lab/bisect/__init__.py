"""Bisection: the search over candidates and the job that builds and tests them."""
