"""Downstream evaluation (VQA, NLVR2, SNLI-VE, RefCOCO+, Winoground-style minimal pairs), the
fine-tuning tasks ALBEF, UNITER and VLMo report: the metrics as the tasks define them and the
annotation files ALBEF and LAVIS read, as typed records checked at load. Torch-free."""
