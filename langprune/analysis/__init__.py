"""What each unit is worth per language: heads by masking, gradient and activation (`analyze`, in the
precision this CPU runs fast, `precision`), FFN neurons by activation frequency and contribution
(`neurons`)."""
