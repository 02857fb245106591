"""The benchmark: the sweep of points, fio job files and fio's output."""
