"""What an export proves, written down: `report.md` and `report.json` (`report`), the vocabulary
frontier's table (`frontier`), the language matrix (`languages`), the analysis benchmarks' tables
(`benchmarks`), what the tables share (`tables`) and the head heatmap (`plots`)."""
