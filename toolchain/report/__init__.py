"""What an export proves, written down: `report.md` and `report.json` (`report`) and the head heatmap (`plots`)."""
