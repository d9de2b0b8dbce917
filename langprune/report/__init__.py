"""What an export proves, written down: `report.md` and `report.json` (`report`), the vocabulary
frontier's table (`frontier`), the analysis benchmarks' tables (`benchmarks`) and the head heatmap (`plots`)."""
