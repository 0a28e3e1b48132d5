"""What runs inside an experiment's Ray Job: warm starts, the Tune run over the store's
runnable trials, looks of the adaptive-seed plan, data-parallel trials, progress, finalize."""
