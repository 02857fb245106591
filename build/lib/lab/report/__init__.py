"""The report: statistics, comparisons, Markdown/HTML/text documents, plots and JUnit."""
