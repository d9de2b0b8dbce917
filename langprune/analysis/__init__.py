"""What each unit is worth per language: heads by masking, gradient and activation (`analyze`; the losses
it reads, `losses`; head masking, `masking`; in the precision this CPU runs fast, `precision`), FFN
neurons by activation frequency and contribution (`neurons`)."""
