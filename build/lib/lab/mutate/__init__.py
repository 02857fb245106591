"""Mutation testing of the suite: mutants of the patched code and the job that runs them."""
