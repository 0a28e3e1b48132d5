"""What a dry run answers before anything runs: the seeds a difference needs (power) and the
adaptive-seed plan (schedule, looks, stopping rule, expected trials)."""
