"""What an export proves, written down: `report.md` and `report.json` (`report`), the vocabulary
frontier's table (`frontier`) and the head heatmap (`plots`)."""
