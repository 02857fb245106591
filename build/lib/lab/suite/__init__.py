"""The regression suite: its cases, how they run (alone or together), user scripts,
labfsx and the verdict cache."""
